"""Whether a stored change belongs in a feed: pure, one function over a change and a filter."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.answers import Change
from bot.feeds.filters import FeedFilter
from teston.core.editors import ANONYMOUS_USER_PATTERN

# The same definition of "anonymous" as the daily figures: an IP address or a temporary account.
_ANONYMOUS = re.compile(ANONYMOUS_USER_PATTERN)


@dataclass(frozen=True, slots=True)
class FeedChange:
    """A stored change with what a feed needs beyond what `!recent` shows: its arrival and minor flag."""

    arrival: int
    change: Change
    minor: bool | None = None


def size_change(change: Change) -> int | None:
    """Bytes added (positive) or removed (negative) by an edit or a page creation; None for the rest."""
    if change.type not in ("edit", "new") or change.length_new is None:
        return None
    return change.length_new - (change.length_old or 0)


def is_anonymous(user_name: str | None) -> bool:
    return bool(user_name) and _ANONYMOUS.match(user_name or "") is not None


def matches(feed_filter: FeedFilter, item: FeedChange) -> bool:
    """True when every filter of the feed lets the change through."""
    change = item.change
    f = feed_filter
    if change.type not in f.types:
        return False
    if f.namespaces is not None and change.namespace not in f.namespaces:
        return False
    if change.bot and not f.bots:
        return False
    if item.minor and not f.minor:
        return False
    if f.min_bytes is not None:
        size = size_change(change)
        if size is None or abs(size) < f.min_bytes:
            return False
    if f.title_prefix is not None and not (change.title or "").startswith(f.title_prefix):
        return False
    if f.user is not None and change.user_name != f.user:
        return False
    return not f.anonymous_only or is_anonymous(change.user_name)
