"""What a command's text asks for: pure parsing into typed requests, or a `UsageError` with one usage line.

Text commands keep the original bot's syntax exactly (`!recent`, `!recent 5`, `!recent en`,
`!recent en 20`, `!stats 2025-02-04 en`, `!setLang es`, `!setLang es guild`) and add optional words
(`bots`, `categorize`, `all`). Slash commands arrive as typed options and are checked by the same
functions, so both forms accept and refuse exactly the same things.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from enum import StrEnum

from bot.feeds.filters import DEFAULT_FILTER, FeedFilter, FilterError, parse_filters

# `!recent` shows 10 changes unless asked, and never more than 100 (one Discord reply stays readable).
DEFAULT_RECENT_COUNT = 10
MIN_RECENT_COUNT = 1
MAX_RECENT_COUNT = 100
# Wikipedia went live on 2001-01-15; the stream has nothing older, so earlier days are a typo.
FIRST_YEAR = 2001
# A digest is posted after the nightly roll-up (00:15 UTC by default) has made yesterday final.
DIGEST_TIME = time(0, 30)
# `!chart` without a period shows this many days, up to today; a chart spans at most a year (a `!stats`
# range has no limit: it sums at most one summary row per day).
DEFAULT_CHART_DAYS = 30
MAX_PERIOD_DAYS = 366
# More lines than this make a chart unreadable.
MAX_CHART_WIKIS = 5
RANGE_MARK = ".."
# Longer than any real command; refusing early keeps pathological input away from every later step.
MAX_ARGUMENTS_LENGTH = 200
MAX_TOKEN_LENGTH = 100
# How much of an offending argument a reply repeats back.
MAX_ECHO_LENGTH = 40

_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DAYS_SHAPE = re.compile(r"(\d+)d", re.IGNORECASE)
_TIME_SHAPE = re.compile(r"(\d{1,2}):(\d{2})")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER_LIKE = re.compile(r"[+-]?(\d+[.,]\d*|\d*[.,]\d+|\d+e\d+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class Command(StrEnum):
    RECENT = "recent"
    STATS = "stats"
    SETLANG = "setlang"
    CHART = "chart"
    TOP = "top"
    DIGEST = "digest"
    UNDIGEST = "undigest"
    DIGESTS = "digests"
    HELP = "help"
    WATCH = "watch"
    UNWATCH = "unwatch"
    WATCHES = "watches"


class Scope(StrEnum):
    """Whose default language `setLang` changes."""

    USER = "user"
    GUILD = "guild"


# One line per command, in the original bot's words; `{p}` is the command prefix.
PREFIX_USAGE = {
    Command.RECENT: "{p}recent [lang] [n] [bots]",
    Command.STATS: "{p}stats <yyyy-mm-dd>|<from>..<to> [lang]",
    Command.SETLANG: "{p}setLang <code> [guild]",
    Command.CHART: "{p}chart <lang>[,<lang>…] [<from>..<to>|<N>d|<yyyy-mm-dd>]",
    Command.TOP: "{p}top <lang> [yyyy-mm-dd] [pages|editors]",
    Command.DIGEST: "{p}digest <lang> [HH:MM]",
    Command.UNDIGEST: "{p}undigest <id|lang>",
    Command.DIGESTS: "{p}digests",
    Command.HELP: "{p}help [command]",
    Command.WATCH: "{p}watch <lang> [type=edit|new|log|categorize] [ns=<n>,…] [bots] [minor=no] "
    "[min=<bytes>] [title=<prefix>] [user=<name>] [anon]",
    Command.UNWATCH: "{p}unwatch <id>",
    Command.WATCHES: "{p}watches",
}
SLASH_USAGE = {
    Command.RECENT: "/recent [language] [count] [bots] [categorize]",
    Command.STATS: "/stats date:<yyyy-mm-dd>|<from>..<to> [language]",
    Command.SETLANG: "/setlang language:<code> [server]",
    Command.CHART: "/chart [languages] [period]",
    Command.TOP: "/top [language] [date] [list]",
    Command.DIGEST: "/digest language:<code> [time]",
    Command.UNDIGEST: "/undigest digest:<id|lang>",
    Command.DIGESTS: "/digests",
    Command.HELP: "/help [command]",
    Command.WATCH: "/watch language:<code> [filters:<type=… ns=… bots minor=no min=… title=… user=… anon>]",
    Command.UNWATCH: "/unwatch id:<n>",
    Command.WATCHES: "/watches",
}
SUMMARIES = {
    Command.RECENT: "the newest changes of a wiki (n from 1 to 100, default 10); "
    "`bots` includes bot changes, `categorize` category changes, `all` both",
    Command.STATS: "a wiki's figures for one UTC day, or summed over days (`2025-02-01..2025-02-07`)",
    Command.SETLANG: "set your default language; add `guild` to set the server's (Manage Server)",
    Command.CHART: "a chart (PNG) of daily changes by editor kind, one line per wiki for up to 5 wikis "
    "(`en,de`), over `<from>..<to>` or the last `<N>d` (default 30d); a date charts that day per hour",
    Command.TOP: "a day's 10 most edited pages, or its 10 most active `editors`",
    Command.DIGEST: "post yesterday's figures and chart in this channel every day at HH:MM UTC "
    "(default 00:30; Manage Channels)",
    Command.UNDIGEST: "stop a daily digest of this channel (Manage Channels)",
    Command.DIGESTS: "this server's daily digests",
    Command.HELP: "this list",
    Command.WATCH: "post a wiki's changes in this channel as they happen, filtered (Manage Channels)",
    Command.UNWATCH: "stop one of this server's feeds (Manage Channels)",
    Command.WATCHES: "this server's feeds and their state",
}

# Words `!recent` accepts besides a language and a number; no wiki is called any of them.
_BOTS_WORDS = frozenset({"bots", "bot", "+bots"})
_CATEGORIZE_WORDS = frozenset({"categorize", "categories", "+categorize"})
_ALL_WORDS = frozenset({"all", "everything"})
_GUILD_WORDS = frozenset({"guild", "server"})
_TODAY_WORDS = {"today": 0, "yesterday": 1}


class UsageError(ValueError):
    """A command was given arguments it cannot use; `problem` says why in plain, unescaped text.

    `missing` is set when the command needs a user (or a server) the invoker did not name: a transport
    that can name one (`teston ask --user-id`) says how.
    """

    def __init__(self, command: Command | None, problem: str, *, missing: Scope | None = None) -> None:
        super().__init__(problem)
        self.command = command
        self.problem = problem
        self.missing = missing


@dataclass(frozen=True, slots=True)
class RecentRequest:
    language: str | None = None
    count: int = DEFAULT_RECENT_COUNT
    include_bots: bool = False
    include_categorize: bool = False
    # The number asked for when it was above the maximum, so the reply can say it was lowered.
    asked: int | None = None


@dataclass(frozen=True, slots=True)
class StatsRequest:
    day: date
    language: str | None = None


@dataclass(frozen=True, slots=True)
class SetLanguageRequest:
    """Set a default (`language` given) or show the defaults in force (`language` None)."""

    language: str | None = None
    scope: Scope = Scope.USER


@dataclass(frozen=True, slots=True)
class HelpRequest:
    command: Command | None = None


@dataclass(frozen=True, slots=True)
class RangeStatsRequest:
    """`!stats <from>..<to> [lang]`: figures summed over the days `first` to `last`, both included."""

    first: date
    last: date
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ChartRequest:
    """A chart of daily changes from `first` to `last`, or of one day's hours when `hourly`."""

    first: date
    last: date
    languages: tuple[str, ...] = ()
    hourly: bool = False


class TopList(StrEnum):
    PAGES = "pages"
    EDITORS = "editors"


@dataclass(frozen=True, slots=True)
class TopRequest:
    day: date
    language: str | None = None
    kind: TopList = TopList.PAGES


@dataclass(frozen=True, slots=True)
class DigestRequest:
    """Post `language`'s daily digest in the current channel at `at` (UTC) each day."""

    language: str
    at: time = DIGEST_TIME


@dataclass(frozen=True, slots=True)
class UndigestRequest:
    """Stop a digest of the current channel, named by its id or its language."""

    digest_id: int | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class DigestsRequest:
    pass


@dataclass(frozen=True, slots=True)
class WatchRequest:
    language: str
    filters: FeedFilter = DEFAULT_FILTER


@dataclass(frozen=True, slots=True)
class UnwatchRequest:
    feed_id: int


@dataclass(frozen=True, slots=True)
class WatchesRequest:
    pass


FeedRequest = WatchRequest | UnwatchRequest | WatchesRequest


Request = (
    RecentRequest
    | StatsRequest
    | SetLanguageRequest
    | HelpRequest
    | RangeStatsRequest
    | ChartRequest
    | TopRequest
    | DigestRequest
    | UndigestRequest
    | DigestsRequest
    | FeedRequest
)


def without_format_characters(text: str) -> str:
    """`text` without invisible format characters (Unicode category Cf: zero-width spaces and joiners,
    byte order marks, direction marks), which a paste from a web page or a phone keyboard slips into
    `!recent\u200b en 5` where nobody can see them."""
    if text.isascii():
        return text
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def visible(text: str) -> str:
    """`text` without control and invisible format characters."""
    return _CONTROL.sub("", without_format_characters(text))


def shown(text: str) -> str:
    """User text as a reply quotes it: control characters dropped, long text cut, in single quotes."""
    clean = visible(text)
    if len(clean) > MAX_ECHO_LENGTH:
        clean = clean[: MAX_ECHO_LENGTH - 1] + "…"
    return f"'{clean}'"


def command_named(name: str) -> Command | None:
    """The command a name means, ignoring case (`setLang`, `SETLANG`); None if there is none."""
    try:
        return Command(name.strip().lower())
    except ValueError:
        return None


def split_command(text: str, prefix: str, *, also: Sequence[str] = ()) -> tuple[str, str]:
    """The command name and the rest of `text`; the prefix is optional (`teston ask "stats …"`).

    `also` lists other prefixes to accept in the same way (`teston ask` takes `!` whatever the bot's is).
    """
    body = text.strip()
    # The longest first, so a prefix `!!` is not read as `!` followed by a command called `!stats`.
    for candidate in sorted({prefix, *also, "/"} - {""}, key=len, reverse=True):
        if body.startswith(candidate):
            body = body[len(candidate) :].lstrip()
            break
    name, _, rest = body.partition(" ")
    return name, rest


def parse_command(text: str, *, prefix: str, today: date, also: Sequence[str] = ()) -> Request:
    """Parse a whole command line such as `!recent en 20` into its request."""
    name, rest = split_command(without_format_characters(text), prefix, also=also)
    if not name:
        raise UsageError(None, "No command given.")
    command = command_named(name)
    if command is None:
        raise UsageError(None, f"Unknown command {shown(name)}.")
    return parse_arguments(command, rest, today=today)


def parse_arguments(command: Command, arguments: str, *, today: date) -> Request:
    """Parse the text after a command's name."""
    tokens = tokenize(command, arguments)
    if command is Command.RECENT:
        return parse_recent(tokens)
    if command is Command.STATS:
        return parse_stats(tokens, today=today)
    if command is Command.SETLANG:
        return parse_setlang(tokens)
    if command is Command.CHART:
        return parse_chart(tokens, today=today)
    if command is Command.TOP:
        return parse_top(tokens, today=today)
    if command is Command.DIGEST:
        return parse_digest(tokens)
    if command is Command.UNDIGEST:
        return parse_undigest(tokens)
    if command is Command.DIGESTS:
        return parse_digests(tokens)
    if command is Command.WATCH:
        return parse_watch(tokens)
    if command is Command.UNWATCH:
        return parse_unwatch(tokens)
    if command is Command.WATCHES:
        if tokens:
            raise UsageError(Command.WATCHES, f"Unexpected extra argument {shown(tokens[0])}.")
        return WatchesRequest()
    return parse_help(tokens)


def tokenize(command: Command, arguments: str) -> list[str]:
    """Split arguments on whitespace, dropping quotes around a word (`"en"` is `en`)."""
    if len(arguments) > MAX_ARGUMENTS_LENGTH:
        raise UsageError(
            command, f"That is too long ({len(arguments)} characters; at most {MAX_ARGUMENTS_LENGTH})."
        )
    tokens = []
    for raw in arguments.split():
        token = raw
        if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'`":
            token = token[1:-1]
        token = visible(token)
        if len(token) > MAX_TOKEN_LENGTH:
            raise UsageError(command, f"{shown(token)} is too long.")
        if token:
            tokens.append(token)
    return tokens


def parse_recent(tokens: Sequence[str]) -> RecentRequest:
    """`[lang] [n] [bots|categorize|all]`, the language and the number in either order."""
    language: str | None = None
    count: int | None = None
    asked: int | None = None
    include_bots = include_categorize = False
    for token in tokens:
        word = token.lower()
        if word in _BOTS_WORDS:
            include_bots = True
        elif word in _CATEGORIZE_WORDS:
            include_categorize = True
        elif word in _ALL_WORDS:
            include_bots = include_categorize = True
        elif _INTEGER.fullmatch(token) or _NUMBER_LIKE.fullmatch(token):
            if count is not None:
                raise UsageError(Command.RECENT, f"Give one number of changes, not {shown(token)} as well.")
            count, asked = parse_count(token)
        elif language is None:
            language = check_language_text(Command.RECENT, token)
        else:
            raise UsageError(Command.RECENT, f"Unexpected extra argument {shown(token)}.")
    return RecentRequest(
        language=language,
        count=DEFAULT_RECENT_COUNT if count is None else count,
        include_bots=include_bots,
        include_categorize=include_categorize,
        asked=asked,
    )


def parse_count(text: str) -> tuple[int, int | None]:
    """The number of changes to show, and the number asked for if it had to be lowered to 100."""
    if not _INTEGER.fullmatch(text.strip()):
        raise UsageError(Command.RECENT, f"{shown(text)} is not a whole number of changes.")
    return clamp_count(int(text))


def clamp_count(value: int) -> tuple[int, int | None]:
    """Counts above the maximum are lowered to it (the old bot did too); below 1 is a mistake."""
    if value < MIN_RECENT_COUNT:
        raise UsageError(
            Command.RECENT, f"The number of changes must be from {MIN_RECENT_COUNT} to {MAX_RECENT_COUNT}."
        )
    if value > MAX_RECENT_COUNT:
        return MAX_RECENT_COUNT, value
    return value, None


def parse_stats(tokens: Sequence[str], *, today: date) -> StatsRequest | RangeStatsRequest:
    """`<yyyy-mm-dd> [lang]` or `<from>..<to> [lang]`; the date may also come second."""
    day: date | None = None
    language: str | None = None
    span: tuple[date, date] | None = None
    for token in tokens:
        if day is None and span is None and RANGE_MARK in token:
            span = parse_range(Command.STATS, token, today=today)
        elif day is None and span is None and (token[0].isdigit() or token.lower() in _TODAY_WORDS):
            day = parse_day(token, today=today)
        elif language is None and not token[0].isdigit():
            language = check_language_text(Command.STATS, token)
        else:
            raise UsageError(Command.STATS, f"Unexpected extra argument {shown(token)}.")
    if span is not None:
        return RangeStatsRequest(first=span[0], last=span[1], language=language)
    if day is None:
        raise UsageError(Command.STATS, "Which day? Give a date such as 2025-02-04.")
    return StatsRequest(day=day, language=language)


def parse_day(text: str, *, today: date, command: Command = Command.STATS) -> date:
    """A UTC day from `yyyy-mm-dd` (or `today`, `yesterday`), between 2001 and today."""
    word = text.strip().lower()
    if word in _TODAY_WORDS:
        return today - timedelta(days=_TODAY_WORDS[word])
    if not _DATE_SHAPE.fullmatch(word):
        raise UsageError(command, f"{shown(text)} is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04.")
    try:
        day = date.fromisoformat(word)
    except ValueError:
        raise UsageError(command, f"{shown(text)} is not a real day.") from None
    if day.year < FIRST_YEAR:
        raise UsageError(command, f"{day.isoformat()} is before Wikipedia began ({FIRST_YEAR}).")
    if day > today:
        raise UsageError(command, f"{day.isoformat()} is in the future (today is {today.isoformat()} UTC).")
    return day


def parse_setlang(tokens: Sequence[str]) -> SetLanguageRequest:
    """`<code> [guild]`; with no code at all, the reply shows the defaults in force."""
    language: str | None = None
    scope = Scope.USER
    for token in tokens:
        if token.lower() in _GUILD_WORDS and scope is Scope.USER:
            scope = Scope.GUILD
        elif language is None:
            language = check_language_text(Command.SETLANG, token)
        else:
            raise UsageError(Command.SETLANG, f"Unexpected extra argument {shown(token)}.")
    return checked_setlang(SetLanguageRequest(language=language, scope=scope))


def checked_setlang(request: SetLanguageRequest) -> SetLanguageRequest:
    """`guild` alone asks to change the server's default without saying to what: ask which language."""
    if request.scope is Scope.GUILD and request.language is None:
        raise UsageError(Command.SETLANG, "Which language? Give a code such as de or zh-hans.")
    return request


def parse_help(tokens: Sequence[str]) -> HelpRequest:
    if not tokens:
        return HelpRequest()
    if len(tokens) > 1:
        raise UsageError(Command.HELP, f"Unexpected extra argument {shown(tokens[1])}.")
    command = command_named(tokens[0].removeprefix("!").removeprefix("/"))
    if command is None:
        raise UsageError(Command.HELP, f"There is no command {shown(tokens[0])}.")
    return HelpRequest(command)


def check_language_text(command: Command, text: str) -> str:
    """A language argument as typed; whether a wiki answers to it is the catalog's to say."""
    stripped = visible(text).strip()
    if not stripped:
        raise UsageError(command, "The language is empty.")
    if len(stripped) > MAX_TOKEN_LENGTH:
        raise UsageError(command, f"{shown(stripped)} is too long for a language.")
    return stripped


def recent_request(
    language: str | None, count: int | None, *, include_bots: bool, include_categorize: bool
) -> RecentRequest:
    """The request of a `/recent` slash command, checked like the text form."""
    checked_count, asked = (DEFAULT_RECENT_COUNT, None) if count is None else clamp_count(count)
    return RecentRequest(
        language=None if language is None else check_language_text(Command.RECENT, language),
        count=checked_count,
        include_bots=include_bots,
        include_categorize=include_categorize,
        asked=asked,
    )


def stats_request(day_text: str, language: str | None, *, today: date) -> StatsRequest | RangeStatsRequest:
    """The request of a `/stats` slash command, checked like the text form."""
    if len(day_text) > MAX_TOKEN_LENGTH:
        raise UsageError(Command.STATS, f"{shown(day_text)} is too long for a date.")
    if RANGE_MARK in day_text:
        first, last = parse_range(Command.STATS, day_text.strip(), today=today)
        return RangeStatsRequest(
            first=first,
            last=last,
            language=None if language is None else check_language_text(Command.STATS, language),
        )
    return StatsRequest(
        day=parse_day(day_text, today=today),
        language=None if language is None else check_language_text(Command.STATS, language),
    )


def setlang_request(language: str | None, *, for_guild: bool) -> SetLanguageRequest:
    """The request of a `/setlang` slash command, checked like the text form."""
    return checked_setlang(
        SetLanguageRequest(
            language=None if language is None else check_language_text(Command.SETLANG, language),
            scope=Scope.GUILD if for_guild else Scope.USER,
        )
    )


def help_request(command: str | None) -> HelpRequest:
    """The request of a `/help` slash command."""
    return parse_help([] if command is None else tokenize(Command.HELP, command))


# --- periods, charts, top lists and digests ---------------------------------------------------------


def parse_range(
    command: Command, text: str, *, today: date, max_days: int | None = None
) -> tuple[date, date]:
    """`<from>..<to>`, both UTC days included, in order, at most `max_days` days (if given)."""
    start, _, end = text.partition(RANGE_MARK)
    if not start or not end:
        raise UsageError(command, f"{shown(text)} is not a range; write it as 2025-02-01..2025-02-07.")
    first = parse_day(start, today=today, command=command)
    last = parse_day(end, today=today, command=command)
    if first > last:
        raise UsageError(command, f"The range {shown(text)} ends before it begins.")
    if max_days is not None and (last - first).days + 1 > max_days:
        raise UsageError(command, f"A chart spans at most {max_days} days.")
    return first, last


def parse_last_days(command: Command, text: str, *, today: date) -> tuple[date, date]:
    """`<N>d`: the N days up to and including today."""
    match = _DAYS_SHAPE.fullmatch(text)
    assert match is not None
    days = int(match.group(1))
    if not 1 <= days <= MAX_PERIOD_DAYS:
        raise UsageError(command, f"The number of days must be from 1 to {MAX_PERIOD_DAYS}.")
    return today - timedelta(days=days - 1), today


def chart_languages(text: str) -> tuple[str, ...]:
    """`en,de,fr`: up to five languages, each checked like any language argument."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise UsageError(Command.CHART, f"{shown(text)} has an empty language; separate them with commas.")
    languages = tuple(check_language_text(Command.CHART, part) for part in parts)
    if len(languages) > MAX_CHART_WIKIS:
        raise UsageError(Command.CHART, f"A chart shows at most {MAX_CHART_WIKIS} languages.")
    if len({language.lower() for language in languages}) < len(languages):
        raise UsageError(Command.CHART, f"{shown(text)} names a language twice.")
    return languages


def chart_period(text: str, *, today: date) -> ChartRequest:
    """A chart's period: `<from>..<to>`, `<N>d`, or one day (charted per hour)."""
    if RANGE_MARK in text:
        first, last = parse_range(Command.CHART, text, today=today, max_days=MAX_PERIOD_DAYS)
        return ChartRequest(first=first, last=last)
    if _DAYS_SHAPE.fullmatch(text):
        first, last = parse_last_days(Command.CHART, text, today=today)
        return ChartRequest(first=first, last=last)
    day = parse_day(text, today=today, command=Command.CHART)
    return ChartRequest(first=day, last=day, hourly=True)


def _is_period(token: str) -> bool:
    return token[0].isdigit() or token.lower() in _TODAY_WORDS


def parse_chart(tokens: Sequence[str], *, today: date) -> ChartRequest:
    """`[lang[,lang…]] [<from>..<to> | <N>d | <yyyy-mm-dd>]`, in either order."""
    languages: tuple[str, ...] = ()
    period: ChartRequest | None = None
    for token in tokens:
        if period is None and _is_period(token):
            period = chart_period(token, today=today)
        elif not languages and not token[0].isdigit():
            languages = chart_languages(token)
        else:
            raise UsageError(Command.CHART, f"Unexpected extra argument {shown(token)}.")
    return chart_request_of(languages, period, today=today)


def chart_request_of(languages: tuple[str, ...], period: ChartRequest | None, *, today: date) -> ChartRequest:
    if period is None:
        period = ChartRequest(first=today - timedelta(days=DEFAULT_CHART_DAYS - 1), last=today)
    return ChartRequest(first=period.first, last=period.last, languages=languages, hourly=period.hourly)


def parse_top(tokens: Sequence[str], *, today: date) -> TopRequest:
    """`[lang] [yyyy-mm-dd] [pages|editors]`, in any order; the day defaults to today (UTC)."""
    language: str | None = None
    day: date | None = None
    kind: TopList | None = None
    for token in tokens:
        word = token.lower()
        if kind is None and word in TopList.__members__.values():
            kind = TopList(word)
        elif day is None and _is_period(token):
            day = parse_day(token, today=today, command=Command.TOP)
        elif language is None and not token[0].isdigit():
            language = check_language_text(Command.TOP, token)
        else:
            raise UsageError(Command.TOP, f"Unexpected extra argument {shown(token)}.")
    return TopRequest(day=day or today, language=language, kind=kind or TopList.PAGES)


def parse_digest_time(text: str) -> time:
    """`HH:MM`, a UTC time of day."""
    match = _TIME_SHAPE.fullmatch(text.strip())
    if match is None:
        raise UsageError(Command.DIGEST, f"{shown(text)} is not a time; write it as HH:MM (UTC), e.g. 00:30.")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise UsageError(Command.DIGEST, f"{shown(text)} is not a time of day.")
    return time(hour, minute)


def parse_digest(tokens: Sequence[str]) -> DigestRequest:
    """`<lang> [HH:MM]`."""
    language: str | None = None
    at: time | None = None
    for token in tokens:
        if at is None and token[0].isdigit():
            at = parse_digest_time(token)
        elif language is None and not token[0].isdigit():
            language = check_language_text(Command.DIGEST, token)
        else:
            raise UsageError(Command.DIGEST, f"Unexpected extra argument {shown(token)}.")
    if language is None:
        raise UsageError(Command.DIGEST, "Which language? Give a code such as en or de.")
    return DigestRequest(language=language, at=at or DIGEST_TIME)


def parse_undigest(tokens: Sequence[str]) -> UndigestRequest:
    """`<id|lang>`: a digest's number (as `!digests` lists it) or its language."""
    if not tokens:
        raise UsageError(Command.UNDIGEST, "Which digest? Give its number (see digests) or its language.")
    if len(tokens) > 1:
        raise UsageError(Command.UNDIGEST, f"Unexpected extra argument {shown(tokens[1])}.")
    token = tokens[0].removeprefix("#")
    if _INTEGER.fullmatch(token):
        number = int(token)
        if number < 1:
            raise UsageError(Command.UNDIGEST, f"{shown(token)} is not a digest number.")
        return UndigestRequest(digest_id=number)
    return UndigestRequest(language=check_language_text(Command.UNDIGEST, token))


def parse_digests(tokens: Sequence[str]) -> DigestsRequest:
    if tokens:
        raise UsageError(Command.DIGESTS, f"Unexpected extra argument {shown(tokens[0])}.")
    return DigestsRequest()


def chart_request(languages: str | None, period: str | None, *, today: date) -> ChartRequest:
    """The request of a `/chart` slash command, checked like the text form."""
    tokens = [*tokenize(Command.CHART, languages or "")[:1], *tokenize(Command.CHART, period or "")]
    if languages and len(languages.split()) > 1:
        raise UsageError(Command.CHART, "Separate languages with commas, not spaces.")
    return parse_chart(tokens, today=today)


def top_request(language: str | None, day: str | None, kind: str | None, *, today: date) -> TopRequest:
    """The request of a `/top` slash command, checked like the text form."""
    return TopRequest(
        day=today if day is None else parse_day(day[:MAX_TOKEN_LENGTH], today=today, command=Command.TOP),
        language=None if language is None else check_language_text(Command.TOP, language),
        kind=TopList.PAGES if kind is None else TopList(kind),
    )


def digest_request(language: str, at: str | None) -> DigestRequest:
    """The request of a `/digest` slash command, checked like the text form."""
    return DigestRequest(
        language=check_language_text(Command.DIGEST, language),
        at=DIGEST_TIME if at is None else parse_digest_time(at[:MAX_TOKEN_LENGTH]),
    )


def undigest_request(target: str) -> UndigestRequest:
    """The request of an `/undigest` slash command, checked like the text form."""
    return parse_undigest(tokenize(Command.UNDIGEST, target))


def parse_watch(tokens: Sequence[str]) -> WatchRequest:
    """`<lang> [filters…]`: the language first, then filter words (`bot.feeds.filters`)."""
    if not tokens:
        raise UsageError(Command.WATCH, "Which wiki? Give a language such as en or de first.")
    if "=" in tokens[0]:
        raise UsageError(Command.WATCH, "Give the language first, then the filters.")
    language = check_language_text(Command.WATCH, tokens[0])
    try:
        return WatchRequest(language=language, filters=parse_filters(tokens[1:]))
    except FilterError as error:
        raise UsageError(Command.WATCH, str(error)) from None


def parse_unwatch(tokens: Sequence[str]) -> UnwatchRequest:
    """`<id>`: the number `!watches` shows for the feed."""
    if not tokens:
        raise UsageError(Command.UNWATCH, "Which feed? Give its number from !watches.")
    if len(tokens) > 1:
        raise UsageError(Command.UNWATCH, f"Unexpected extra argument {shown(tokens[1])}.")
    text = tokens[0].removeprefix("#")
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise UsageError(Command.UNWATCH, f"{shown(tokens[0])} is not a feed number.")
    return UnwatchRequest(int(text))


def watch_request(language: str, filters: str | None) -> WatchRequest:
    """The request of a `/watch` slash command, checked like the text form."""
    words = tokenize(Command.WATCH, filters or "")
    return parse_watch([language, *words] if language.strip() else words)


def unwatch_request(feed_id: int) -> UnwatchRequest:
    """The request of an `/unwatch` slash command, checked like the text form."""
    return parse_unwatch([str(feed_id)])
