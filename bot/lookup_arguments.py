"""Arguments of the lookups: `!recent`, `!stats` (a day or a range), `!setLang` and `!help`, as text or as
slash options, checked by the same functions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from bot.argument_text import (
    INTEGER,
    MAX_TOKEN_LENGTH,
    RANGE_MARK,
    TODAY_WORDS,
    check_language_text,
    command_named,
    parse_day,
    parse_range,
    shown,
    tokenize,
)
from bot.requests import (
    DEFAULT_RECENT_COUNT,
    MAX_RECENT_COUNT,
    MIN_RECENT_COUNT,
    Command,
    HelpRequest,
    RangeStatsRequest,
    RecentRequest,
    Scope,
    SetLanguageRequest,
    StatsRequest,
    UsageError,
)

_NUMBER_LIKE = re.compile(r"[+-]?(\d+[.,]\d*|\d*[.,]\d+|\d+e\d+)", re.IGNORECASE)
# Words `!recent` accepts besides a language and a number; no wiki is called any of them.
_BOTS_WORDS = frozenset({"bots", "bot", "+bots"})
_CATEGORIZE_WORDS = frozenset({"categorize", "categories", "+categorize"})
_ALL_WORDS = frozenset({"all", "everything"})
_GUILD_WORDS = frozenset({"guild", "server"})


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
        elif INTEGER.fullmatch(token) or _NUMBER_LIKE.fullmatch(token):
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
    if not INTEGER.fullmatch(text.strip()):
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
        elif day is None and span is None and (token[0].isdigit() or token.lower() in TODAY_WORDS):
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
