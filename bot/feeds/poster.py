"""The feed poster: wakes on each commit of new changes (LISTEN) or every few seconds, and posts.

One task per active feed; the notifications of a quarter of a second wake each feed once. A step
reads the rows after the feed's cursor, plans (`bot.feeds.plan`), writes the planned message down
(`pending_to`), sends it, and only then moves the cursor. A restart
between sending and moving the cursor rebuilds the same message from the same rows and sends it with
the same nonce, which Discord answers with the message it already has (`enforce_nonce`): nothing is
posted twice, and nothing is skipped without a line saying so.

Posts to one channel keep within Discord's limit of 5 messages per 5 seconds (`bot.feeds.pacing`) and
are at least `min_interval` (1 s) apart: a quiet channel's post goes out at once, a busy channel's
every second with what arrived meanwhile, rather than five at once and then none for five seconds; a
429 is waited out as long as its `retry_after` says (discord.py does it, then sends the same request
again). A channel that is gone (404) or that TestON may no longer post in
(403) pauses its feeds, with the reason `!watches` shows.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import AsyncConnection

from bot.feeds import store
from bot.feeds.answers import FeedRow
from bot.feeds.filters import parse_filter_words
from bot.feeds.matching import matches
from bot.feeds.pacing import DISCORD_CHANNEL_LIMIT, DISCORD_CHANNEL_WINDOW, ChannelPace
from bot.feeds.plan import (
    Advance,
    Backlog,
    Post,
    Skip,
    Step,
    next_step,
    nonce,
    resent_step,
    shared_nonce,
    shared_post,
)
from bot.feeds.posts import changes_message, skipped_message
from bot.messages import Message
from bot.notifications import Listen, Notifications
from teston.core.notices import CHANGES_CHANNEL
from teston.core.waiting import wait_event
from teston.core.wikis import WikiCatalog

if TYPE_CHECKING:
    from bot.commands import ConnectionSource
    from bot.metrics import BotMetrics

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 5.0
# Posts spread evenly over Discord's window: a busy channel posts every second, not five at once and
# then nothing for five seconds.
DEFAULT_MIN_INTERVAL = DISCORD_CHANNEL_WINDOW / DISCORD_CHANNEL_LIMIT
# The feeds read new rows at most this often, however often rows are committed (each read is two
# statements per feed).
DEFAULT_WAKE_INTERVAL = 0.25
# Rows read per statement while scanning a backlog.
READ_CHUNK = 2000
# How long to wait before trying again after Discord or the database failed.
RETRY_AFTER_FAILURE = 10.0

CHANNEL_GONE = "the channel was deleted (or TestON can no longer see it)"
NOT_ALLOWED = "TestON may not post in the channel (it needs View Channel, Send Messages and Embed Links)"


# A feed and the step a message carries for it.
Part = tuple[FeedRow, Step]


class Sent(enum.Enum):
    """What became of a feed's message."""

    POSTED = "posted"
    PAUSED = "paused"  # the channel is gone or closed to TestON: the feed is paused
    FAILED = "failed"  # Discord or the network failed: the same message is sent again


class ChannelGone(Exception):
    """Discord answered 404: the channel no longer exists for the bot."""


class NotAllowed(Exception):
    """Discord answered 403: the bot lost a permission it needs to post there."""


class Channels(Protocol):
    """Where posts go: Discord through discord.py in production (`bot.feeds.discord_channels`)."""

    async def post(self, channel_id: int, message: Message, *, nonce: str) -> None: ...


class FeedPoster:
    """Runs every active feed until cancelled; built by the composition root, run by the bot."""

    def __init__(
        self,
        database: ConnectionSource,
        catalog: WikiCatalog,
        *,
        prefix: str = "!",
        listen: Listen | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        channel_limit: tuple[int, float] = (DISCORD_CHANNEL_LIMIT, DISCORD_CHANNEL_WINDOW),
        retry_after_failure: float = RETRY_AFTER_FAILURE,
        read_chunk: int = READ_CHUNK,
        wake_interval: float = DEFAULT_WAKE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        metrics: BotMetrics | None = None,
        owns: Callable[[int | None], bool] | None = None,
    ) -> None:
        self.database = database
        # Whether this process serves a guild (its shard, `bot.shards`); other processes run the rest.
        self.owns = owns or (lambda guild_id: True)
        self.metrics = metrics
        self.catalog = catalog
        self.prefix = prefix
        self._listen = listen
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self._pace = ChannelPace(limit=channel_limit[0], per=channel_limit[1], min_interval=min_interval)
        self.retry_after_failure = retry_after_failure
        self.read_chunk = read_chunk
        self.wake_interval = wake_interval
        self._clock = clock
        self._wake = asyncio.Event()
        self._feed_wakes: dict[int, asyncio.Event] = {}
        self._channel_locks: dict[int, asyncio.Lock] = {}

    def wake(self) -> None:
        """Look for new changes now (new rows were committed, or a feed was created)."""
        self._wake.set()

    async def run(self, channels: Channels) -> None:
        """Post for every active feed until cancelled (a feed's failure is logged and retried)."""
        async with asyncio.TaskGroup() as group:
            if self._listen is not None:
                notifications = Notifications(
                    self._listen,
                    [self],
                    channels=(CHANGES_CHANNEL,),
                    retry_after_failure=self.retry_after_failure,
                )
                group.create_task(notifications.run(), name="feeds: listen")
            tasks: dict[int, asyncio.Task[None]] = {}
            while True:
                try:
                    async with self.database.connection() as conn:
                        active = {f.id for f in await store.active_feeds(conn) if self.owns(f.guild_id)}
                except (psycopg.Error, OSError) as error:
                    log.warning("feeds: cannot read the feeds (%s); trying again shortly", error)
                    active = set(tasks)  # keep what runs; each feed retries on its own
                for feed_id in [f for f in tasks if f not in active]:
                    tasks.pop(feed_id).cancel()
                    self._feed_wakes.pop(feed_id, None)
                for feed_id in active - set(tasks):
                    self._feed_wakes[feed_id] = asyncio.Event()
                    tasks[feed_id] = group.create_task(
                        self._run_feed(feed_id, channels), name=f"feed {feed_id}"
                    )
                for event in self._feed_wakes.values():
                    event.set()
                woken_at = self._clock()
                await wait_event(self._wake, self.poll_interval)
                # An idle ingester commits each event as it comes, up to fifty times a second: the
                # notifications of one interval wake every feed once, not once per commit.
                rest = self.wake_interval - (self._clock() - woken_at)
                if rest > 0:
                    await asyncio.sleep(rest)
                self._wake.clear()

    # As a `bot.notifications` subscriber: every commit of new changes (or a new feed) wakes the feeds.
    def following(self) -> None:
        self.wake()  # changes committed before LISTEN took effect are read now

    def notified(self, channel: str, payload: str) -> None:
        if channel == CHANGES_CHANNEL:
            self.wake()

    def lost(self) -> None:
        pass  # polling (every `poll_interval`) covers the time without notifications

    async def _run_feed(self, feed_id: int, channels: Channels) -> None:
        wake = self._feed_wakes[feed_id]
        while True:
            await wake.wait()
            wake.clear()
            try:
                while await self.step(feed_id, channels):
                    pass
            except (psycopg.Error, OSError) as error:
                log.warning("feed %d: database error (%s); trying again shortly", feed_id, error)
                await asyncio.sleep(self.retry_after_failure)
                wake.set()
            except Exception:
                # A bug met by one feed must not stop the others; this one tries again later.
                log.exception("feed %d failed; trying again shortly", feed_id)
                await asyncio.sleep(self.retry_after_failure)
                wake.set()

    async def _backlog(self, conn: AsyncConnection[Any], feed: FeedRow) -> Backlog:
        feed_filter = parse_filter_words(feed.filters)
        backlog = Backlog()
        after = feed.cursor
        while True:
            rows = await store.changes_after(
                conn, feed.wiki, after, upto=feed.pending_to, limit=self.read_chunk
            )
            for item in rows:
                backlog.saw(item.arrival)
                if matches(feed_filter, item):
                    backlog.add(item)
            if len(rows) < self.read_chunk:
                return backlog
            after = rows[-1].arrival

    async def _read(self, feed_id: int) -> tuple[FeedRow, Step | None] | None:
        """The feed and its next step from the rows after its cursor; None if it is gone or paused."""
        async with self.database.connection() as conn:
            feed = await store.feed(conn, feed_id)
            if feed is None or feed.paused_reason is not None:
                return None
            backlog = await self._backlog(conn, feed)
        if self.metrics is not None:
            self.metrics.set_feed_backlog(backlog.count)
        if feed.pending_to is not None:
            return feed, resent_step(backlog, feed.pending_to, skip=feed.pending_skip)
        return feed, next_step(backlog, feed.cursor)

    async def step(self, feed_id: int, channels: Channels) -> bool:
        """Take the feed's next step; True if it may have more to do at once."""
        read = await self._read(feed_id)
        if read is None or read[1] is None:
            return False
        feed, planned = read
        if isinstance(planned, Advance):
            async with self.database.connection() as conn:
                if feed.pending_to is not None:  # the rows of a pending step are gone
                    await store.finish_step(conn, feed.id, planned.to)
                else:  # unless another feed's message has meanwhile taken this one's changes along
                    await store.advance(conn, feed.id, planned.to)
            return False
        async with self._channel_locks.setdefault(feed.channel_id, asyncio.Lock()):
            wait = self._pace.delay(feed.channel_id, self._clock())
            if wait > 0:
                await asyncio.sleep(wait)
            # The channel's turn has come: read again, for what arrived meanwhile, and because a message
            # of another feed of the channel may have carried this one's changes.
            read = await self._read(feed_id)
            if read is None:
                return False
            feed, planned = read
            if planned is None or isinstance(planned, Advance):
                return planned is not None
            parts, message_nonce = await self._parts(feed, planned)
            outcome = await self._send(feed.channel_id, parts, message_nonce, channels)
        if outcome is not Sent.POSTED:
            if outcome is Sent.FAILED:
                # Written down as pending: the next step sends the same message again.
                await asyncio.sleep(self.retry_after_failure)
            return outcome is Sent.FAILED
        async with self.database.connection() as conn:
            for part, step in parts:
                if isinstance(step, Post):
                    await store.finish_step(conn, part.id, step.to, posted=len(step.changes))
                elif isinstance(step, Skip):
                    await store.finish_step(conn, part.id, step.to, skipped=step.count)
                else:
                    await store.finish_step(conn, part.id, step.to)
        return True

    async def _parts(self, feed: FeedRow, planned: Post | Skip) -> tuple[list[Part], str]:
        """The feeds and steps the channel's next message carries, written down as pending, and its nonce.

        A post takes along what the channel's other feeds have waiting, as far as the message has room
        (`shared_post`), the feed whose change waited longest first: the channel's posts are few
        (Discord allows 5 per 5 s), and each feed posting alone would queue behind the others.
        """
        if feed.pending_to is not None and feed.pending_nonce is not None:
            return await self._resent_shared(feed, feed.pending_nonce), feed.pending_nonce
        solo: list[Part] = [(feed, planned)]
        if feed.pending_to is not None:
            return solo, nonce(feed.id, planned.to)
        shares: list[Part] = []
        async with self.database.connection() as conn:
            if isinstance(planned, Post):
                waiting: list[tuple[FeedRow, Backlog]] = []
                for other in await store.channel_feeds(conn, feed.channel_id):
                    if other.id != feed.id and other.pending_to is None and self.owns(other.guild_id):
                        backlog = await self._backlog(conn, other)
                        if backlog.first:
                            waiting.append((other, backlog))
                waiting.sort(key=lambda entry: entry[1].first[0].arrival)
                by_id = {other.id: other for other, _ in waiting}
                shares = [
                    (by_id[other_id], post)
                    for other_id, post in shared_post(planned, [(o.id, b) for o, b in waiting])
                ]
            if not shares:
                await store.begin_step(conn, feed.id, planned.to, skip=isinstance(planned, Skip))
                return solo, nonce(feed.id, planned.to)
            parts = sorted([*solo, *shares], key=lambda part: part[0].id)
            shared = shared_nonce([(part.id, step.to) for part, step in parts])
            for part, step in parts:
                await store.begin_step(conn, part.id, step.to, skip=False, shared_nonce=shared)
        return parts, shared

    async def _resent_shared(self, feed: FeedRow, shared: str) -> list[Part]:
        """The parts of a shared message written down before a restart, rebuilt from their rows."""
        parts: list[Part] = []
        async with self.database.connection() as conn:
            for part in await store.sharing_feeds(conn, feed.channel_id, shared):
                if part.pending_to is not None:
                    backlog = await self._backlog(conn, part)
                    parts.append((part, resent_step(backlog, part.pending_to, skip=False)))
        return parts

    def _message(self, parts: list[Part]) -> Message:
        changes = [item.change for _, step in parts if isinstance(step, Post) for item in step.changes]
        skip = next((step for _, step in parts if isinstance(step, Skip)), None)
        if skip is None:
            return changes_message(changes)
        feed = parts[0][0]
        wiki = self.catalog.by_dbname(feed.wiki)
        return (
            skipped_message(skip.count, wiki, self.prefix)
            if wiki
            else Message(content=f"Skipped {skip.count:,} changes on {feed.wiki} to catch up.")
        )

    async def _send(self, channel_id: int, parts: list[Part], message_nonce: str, channels: Channels) -> Sent:
        """Send the message of `parts` now (the caller holds the channel's turn)."""
        started = self._clock()
        try:
            await channels.post(channel_id, self._message(parts), nonce=message_nonce)
        except (ChannelGone, NotAllowed) as error:
            self._count_post(ok=False)
            reason = CHANNEL_GONE if isinstance(error, ChannelGone) else NOT_ALLOWED
            async with self.database.connection() as conn:
                for part, _ in parts:
                    log.warning("feed %d paused: %s", part.id, reason)
                    await store.pause_feed(conn, part.id, reason)
            return Sent.PAUSED
        except Exception as error:  # Discord or the network; the same message is sent again later
            self._count_post(ok=False)
            ids = ", ".join(str(part.id) for part, _ in parts)
            log.warning("feed %s: could not post (%s); trying again shortly", ids, error)
            return Sent.FAILED
        finally:
            self._pace.record(channel_id, self._clock(), started=started)
        self._count_post(ok=True)
        return Sent.POSTED

    def _count_post(self, *, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.count_feed_post(ok)
