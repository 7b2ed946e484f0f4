"""What each command asks for: the commands, their usage lines, the typed requests, and `UsageError`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum

from bot.feeds.filters import DEFAULT_FILTER, FeedFilter

# `!recent` shows 10 changes unless asked, and never more than 100 (one Discord reply stays readable).
DEFAULT_RECENT_COUNT = 10
MIN_RECENT_COUNT = 1
MAX_RECENT_COUNT = 100
# A digest is posted after the nightly roll-up (00:15 UTC by default) has made yesterday final.
DIGEST_TIME = time(0, 30)


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
