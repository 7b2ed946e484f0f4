"""Arguments of the subscriptions: daily digests (`!digest`, `!undigest`, `!digests`) and live feeds
(`!watch`, `!unwatch`, `!watches`), as text or as slash options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time

from bot.argument_text import INTEGER, MAX_TOKEN_LENGTH, check_language_text, shown, tokenize
from bot.feeds.filters import FilterError, parse_filters
from bot.requests import (
    DIGEST_TIME,
    Command,
    DigestRequest,
    DigestsRequest,
    UndigestRequest,
    UnwatchRequest,
    UsageError,
    WatchesRequest,
    WatchRequest,
)

_TIME_SHAPE = re.compile(r"(\d{1,2}):(\d{2})")


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
    if INTEGER.fullmatch(token):
        number = int(token)
        if number < 1:
            raise UsageError(Command.UNDIGEST, f"{shown(token)} is not a digest number.")
        return UndigestRequest(digest_id=number)
    return UndigestRequest(language=check_language_text(Command.UNDIGEST, token))


def parse_digests(tokens: Sequence[str]) -> DigestsRequest:
    if tokens:
        raise UsageError(Command.DIGESTS, f"Unexpected extra argument {shown(tokens[0])}.")
    return DigestsRequest()


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


def parse_watches(tokens: Sequence[str]) -> WatchesRequest:
    if tokens:
        raise UsageError(Command.WATCHES, f"Unexpected extra argument {shown(tokens[0])}.")
    return WatchesRequest()


def watch_request(language: str, filters: str | None) -> WatchRequest:
    """The request of a `/watch` slash command, checked like the text form."""
    words = tokenize(Command.WATCH, filters or "")
    return parse_watch([language, *words] if language.strip() else words)


def unwatch_request(feed_id: int) -> UnwatchRequest:
    """The request of an `/unwatch` slash command, checked like the text form."""
    return parse_unwatch([str(feed_id)])
