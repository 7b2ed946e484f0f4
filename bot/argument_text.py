"""The text of a command's arguments, whatever the command: invisible characters dropped, words split
and quoted back, languages and UTC days checked."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date, timedelta

from bot.requests import Command, UsageError

# Wikipedia went live on 2001-01-15; the stream has nothing older, so earlier days are a typo.
FIRST_YEAR = 2001
RANGE_MARK = ".."
# Longer than any real command; refusing early keeps pathological input away from every later step.
MAX_ARGUMENTS_LENGTH = 200
MAX_TOKEN_LENGTH = 100
# How much of an offending argument a reply repeats back.
MAX_ECHO_LENGTH = 40
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
INTEGER = re.compile(r"[+-]?\d+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
# Words that name a day relative to today (UTC).
TODAY_WORDS = {"today": 0, "yesterday": 1}


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


def check_language_text(command: Command, text: str) -> str:
    """A language argument as typed; whether a wiki answers to it is the catalog's to say."""
    stripped = visible(text).strip()
    if not stripped:
        raise UsageError(command, "The language is empty.")
    if len(stripped) > MAX_TOKEN_LENGTH:
        raise UsageError(command, f"{shown(stripped)} is too long for a language.")
    return stripped


def parse_day(text: str, *, today: date, command: Command = Command.STATS) -> date:
    """A UTC day from `yyyy-mm-dd` (or `today`, `yesterday`), between 2001 and today."""
    word = text.strip().lower()
    if word in TODAY_WORDS:
        return today - timedelta(days=TODAY_WORDS[word])
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
