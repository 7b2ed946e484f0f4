"""Arguments of the reports: `!chart` (a period of days, or one day by the hour, for up to five wikis) and
`!top`, in any order, as text or as slash options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from bot.argument_text import (
    MAX_TOKEN_LENGTH,
    RANGE_MARK,
    TODAY_WORDS,
    check_language_text,
    parse_day,
    parse_range,
    shown,
    tokenize,
)
from bot.requests import ChartRequest, Command, TopList, TopRequest, UsageError

# `!chart` without a period shows this many days, up to today; a chart spans at most a year (a `!stats`
# range has no limit: it sums at most one summary row per day).
DEFAULT_CHART_DAYS = 30
MAX_PERIOD_DAYS = 366
# More lines than this make a chart unreadable.
MAX_CHART_WIKIS = 5
_DAYS_SHAPE = re.compile(r"(\d+)d", re.IGNORECASE)


def last_days(command: Command, days: int, *, today: date) -> tuple[date, date]:
    """`<N>d`: the N days up to and including today."""
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
    if (shape := _DAYS_SHAPE.fullmatch(text)) is not None:
        first, last = last_days(Command.CHART, int(shape.group(1)), today=today)
        return ChartRequest(first=first, last=last)
    day = parse_day(text, today=today, command=Command.CHART)
    return ChartRequest(first=day, last=day, hourly=True)


def _is_period(token: str) -> bool:
    return token[0].isdigit() or token.lower() in TODAY_WORDS


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
