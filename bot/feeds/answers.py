"""What `!watch`, `!unwatch` and `!watches` answer, before rendering; and a feed as stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from teston.core.wikis import Wiki

# Per server, so one server cannot make the poster work for everyone else.
MAX_FEEDS_PER_GUILD = 10


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One row of the feeds table."""

    id: int
    guild_id: int
    channel_id: int
    wiki: str
    filters: str
    created_at: datetime
    cursor: int
    pending_to: int | None
    pending_skip: bool
    posted: int
    skipped: int
    last_posted_at: datetime | None
    paused_reason: str | None
    paused_at: datetime | None
    # The message a pending step belongs to when it carries several of the channel's feeds.
    pending_nonce: str | None = None


@dataclass(frozen=True, slots=True)
class FeedCreated:
    feed: FeedRow
    wiki: Wiki


@dataclass(frozen=True, slots=True)
class FeedRemoved:
    feed: FeedRow


@dataclass(frozen=True, slots=True)
class FeedList:
    """This server's feeds, oldest first; `wikis` maps a feed's database name to its wiki where known."""

    feeds: tuple[FeedRow, ...]
    wikis: dict[str, Wiki]


FeedAnswer = FeedCreated | FeedRemoved | FeedList
