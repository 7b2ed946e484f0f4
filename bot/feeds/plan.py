"""What a feed does next, given the changes waiting after its cursor: pure planning, no IO.

A feed reads the rows after its cursor in arrival order and keeps those its filter matches in a
`Backlog`; `next_step` decides: post the first changes (as many as fit one message), post one line
instead of a flood when more than `MAX_BEHIND` are waiting, or only move the cursor past rows that
match nothing. Each step names the arrival its message covers up to (`to`), so after a restart the
same rows give the same message again, and the same nonce.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

from bot.feeds.matching import FeedChange
from bot.feeds.posts import MAX_BEHIND, fitting
from bot.messages import EMBEDS_PER_MESSAGE

# Discord keeps nonces of at most 25 characters.
NONCE_LENGTH = 25


@dataclass
class Backlog:
    """The matching changes after a cursor, in arrival order: the first and last few, and how many."""

    first: list[FeedChange] = field(default_factory=list)
    last: deque[FeedChange] = field(default_factory=lambda: deque(maxlen=EMBEDS_PER_MESSAGE + 1))
    count: int = 0
    # The newest arrival read, matching or not.
    read_to: int | None = None

    def add(self, item: FeedChange) -> None:
        if len(self.first) <= MAX_BEHIND:
            self.first.append(item)
        self.last.append(item)
        self.count += 1

    def saw(self, arrival: int) -> None:
        self.read_to = arrival if self.read_to is None else max(self.read_to, arrival)


@dataclass(frozen=True, slots=True)
class Post:
    """Post these changes in one message; the cursor then moves to `to`."""

    changes: tuple[FeedChange, ...]
    to: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Post one line saying `count` changes were skipped; the cursor then moves to `to`."""

    count: int
    to: int


@dataclass(frozen=True, slots=True)
class Advance:
    """Nothing to post: only move the cursor past rows that match nothing."""

    to: int


Step = Post | Skip | Advance


def next_step(backlog: Backlog, cursor: int) -> Step | None:
    """The feed's next step from `cursor`, or None when nothing new was read."""
    if backlog.count == 0:
        return Advance(backlog.read_to) if backlog.read_to is not None and backlog.read_to > cursor else None
    if backlog.count > MAX_BEHIND:
        # Keep the newest message's worth; `last[0]` is the newest of the skipped ones.
        return Skip(count=backlog.count - EMBEDS_PER_MESSAGE, to=backlog.last[0].arrival)
    return _first_changes(backlog, fitting([item.change for item in backlog.first]))


def _first_changes(backlog: Backlog, shown: int) -> Post:
    """A post of the backlog's first `shown` changes, covering up to the last of them."""
    batch = tuple(backlog.first[:shown])
    # All of the backlog fits: the message also covers the non-matching rows read after it.
    everything = shown == backlog.count and backlog.read_to is not None
    return Post(changes=batch, to=backlog.read_to if everything and backlog.read_to else batch[-1].arrival)


def resent_step(backlog: Backlog, to: int, *, skip: bool) -> Step:
    """The step written down before a crash, rebuilt from the rows up to `to` it covered."""
    if skip:
        return Skip(count=backlog.count, to=to)
    if backlog.count == 0:
        return Advance(to)
    return Post(changes=tuple(backlog.first), to=to)


def nonce(feed_id: int, to: int) -> str:
    """The message's nonce: the same for the same feed and step, so Discord drops a resend."""
    return hashlib.sha256(f"teston-feed:{feed_id}:{to}".encode()).hexdigest()[:NONCE_LENGTH]


def shared_post(lead: Post, others: list[tuple[int, Backlog]]) -> list[tuple[int, Post]]:
    """What the channel's other feeds add to the lead feed's message, in the room it leaves.

    `others` in the order they get room (their oldest waiting change first, say); each gets its first
    changes, as many as still fit, and covers up to the last of them (up to everything it read when all
    fit, as `next_step` does). A feed with nothing, or so far behind it posts a skip line, gets none.
    """
    shown = [item.change for item in lead.changes]
    shares: list[tuple[int, Post]] = []
    for feed_id, backlog in others:
        if backlog.count == 0 or backlog.count > MAX_BEHIND:
            continue
        room = fitting([*shown, *(item.change for item in backlog.first)]) - len(shown)
        if room <= 0:
            break
        post = _first_changes(backlog, room)
        shares.append((feed_id, post))
        shown.extend(item.change for item in post.changes)
    return shares


def shared_nonce(parts: list[tuple[int, int]]) -> str:
    """The nonce of a message carrying several feeds' steps, from each feed's id and `to`."""
    key = ",".join(f"{feed_id}:{to}" for feed_id, to in sorted(parts))
    return hashlib.sha256(f"teston-feeds:{key}".encode()).hexdigest()[:NONCE_LENGTH]
