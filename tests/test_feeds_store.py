"""Feeds over the real PostgreSQL: arrival order and the writer's notification, cursors, late events,
the per-server limit and the feed commands' permission checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bot.answers import Problem
from bot.commands import CommandCore, Invoker
from bot.feeds import store
from bot.feeds.answers import MAX_FEEDS_PER_GUILD, FeedCreated, FeedList, FeedRemoved, FeedRow
from bot.feeds.poster import FeedPoster
from bot.messages import Message
from bot.requests import Command
from bot.shards import ShardPlan
from teston.core.notices import wikis_named
from tests.bot_fixtures import CATALOG, NOW, insert_change, pool
from tests.replays import ingest_file, ingest_path

__all__ = ["pool"]  # fixture used by name

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"
MODERATOR = Invoker(user_id=5, guild_id=1, channel_id=10, can_manage_channels=True)


def test_rows_are_numbered_in_the_order_they_arrive_and_each_commit_notifies(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN recent_changes")
        ingest_path(db_url, CAPTURE, catalog=CATALOG, batch_size=500)
        notified = list(listener.notifies(timeout=2.0))
    assert len(notified) == 4  # one per committed batch of 500
    ids = [json.loads(line)["meta"]["id"] for line in CAPTURE.read_text(encoding="utf-8").splitlines()]
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT event_id::text FROM recent_changes ORDER BY arrival").fetchall()
    assert [row[0] for row in stored] == ids


async def test_a_new_feed_wakes_the_poster_naming_its_wiki_only(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN recent_changes")
        async with pool.connection() as conn:
            await store.create_feed(
                conn, guild_id=1, channel_id=10, wiki="dewiki", filters="", created_by=None
            )
        notified = [notice.payload for notice in listener.notifies(timeout=1.0)]
    # The poster wakes on any notice; the kept `!recent` answers of other wikis stay kept.
    assert [wikis_named(payload) for payload in notified] == [frozenset({"dewiki"})]


async def test_a_feed_starts_after_the_newest_change_and_reads_late_events_by_arrival(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    async with pool.connection() as conn:
        feed = await store.create_feed(
            conn, guild_id=1, channel_id=10, wiki="enwiki", filters="", created_by=None
        )
        assert await store.changes_after(conn, "enwiki", feed.cursor, upto=None, limit=10) == []
    with psycopg.connect(db_url) as conn:
        # An event from the day before arrives now: its time is old, its arrival new.
        insert_change(conn, event_time=datetime(2021, 8, 26, 9, 0, tzinfo=UTC), title="Late")
        insert_change(conn, event_time=NOW, title="Later", wiki="dewiki")
        conn.commit()
    async with pool.connection() as conn:
        [late] = await store.changes_after(conn, "enwiki", feed.cursor, upto=None, limit=10)
        assert late.change.title == "Late"
        assert late.arrival > feed.cursor
        assert await store.changes_after(conn, "enwiki", feed.cursor, upto=feed.cursor, limit=10) == []
        await store.begin_step(conn, feed.id, late.arrival, skip=False)
        await store.finish_step(conn, feed.id, late.arrival, posted=1)
        moved = await store.feed(conn, feed.id)
    assert moved is not None
    assert (moved.cursor, moved.pending_to, moved.posted) == (late.arrival, None, 1)


async def test_feed_commands_check_the_place_the_permission_and_the_limit(pool: AsyncConnectionPool) -> None:
    core = CommandCore(database=pool, catalog=CATALOG, prefix="!", clock=lambda: NOW)
    terminal = await core.answer_text("!watch en", Invoker())
    assert isinstance(terminal, Problem)
    assert terminal.problem.startswith("Feeds post in a server's channel")
    member = Invoker(user_id=6, guild_id=1, channel_id=10)
    refused = await core.answer_text("!watch en", member)
    assert isinstance(refused, Problem)
    assert "Manage Channels" in refused.problem
    for number in range(MAX_FEEDS_PER_GUILD):
        created = await core.answer_text(f"!watch en title=P{number}", MODERATOR)
        assert isinstance(created, FeedCreated)
        assert created.feed.filters == f"title=P{number}"
    over = await core.answer_text("!watch de", MODERATOR)
    assert isinstance(over, Problem)
    assert over.problem.startswith("This server already has 10 feeds")
    elsewhere = await core.answer_text(
        "!watch de", Invoker(guild_id=2, channel_id=20, can_manage_channels=True)
    )
    assert isinstance(elsewhere, FeedCreated)
    listed = await core.answer_text("!watches", member)
    assert isinstance(listed, FeedList)
    assert len(listed.feeds) == MAX_FEEDS_PER_GUILD
    assert await core.answer_text("!unwatch 1", member) == Problem(
        "Only members with the Manage Channels permission can change this server's feeds.",
        Command.UNWATCH,
    )
    removed = await core.answer_text("!unwatch 1", MODERATOR)
    assert isinstance(removed, FeedRemoved)
    assert removed.feed.id == 1
    other_server = await core.answer_text(f"!unwatch {elsewhere.feed.id}", MODERATOR)
    assert isinstance(other_server, Problem)
    assert "has no feed" in other_server.problem


class RecordingChannels:
    """Accepts every post at once and records which channel it went to and how many changes it held."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, int]] = []

    async def post(self, channel_id: int, message: Message, *, nonce: str) -> None:
        self.posts.append((channel_id, len(message.embeds)))


async def _feeds(pool: AsyncConnectionPool, guilds: list[int]) -> list[FeedRow]:
    async with pool.connection() as conn:
        return [feed for guild in guilds for feed in await store.guild_feeds(conn, guild)]


def owner(shard: int) -> Callable[[int | None], bool]:
    return ShardPlan(2, (shard,)).owns


async def test_with_shards_each_guilds_feeds_are_posted_by_one_process_only(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    # Two guilds on different shards of two (`(guild_id >> 22) % 2`), each with a feed of German changes.
    guilds = {0: 6 << 22, 1: 7 << 22}
    channels = {0: 100, 1: 200}
    async with pool.connection() as conn:
        for shard, guild in guilds.items():
            await store.create_feed(
                conn, guild_id=guild, channel_id=channels[shard], wiki="dewiki", filters="", created_by=None
            )
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines()]
    expected = sum(
        1 for r in rows if r["wiki"] == "dewiki" and not r["bot"] and r["type"] in ("edit", "new", "log")
    )
    assert expected > 0
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT max(arrival) FROM recent_changes WHERE wiki = 'dewiki'")
        [(newest,)] = await cursor.fetchall()

    outputs = {shard: RecordingChannels() for shard in guilds}
    posters = {
        shard: FeedPoster(pool, CATALOG, poll_interval=0.1, min_interval=0.0, owns=owner(shard))
        for shard in guilds
    }
    tasks = [asyncio.create_task(posters[shard].run(outputs[shard])) for shard in guilds]
    try:
        async with asyncio.timeout(60):
            while not all(feed.cursor == newest for feed in await _feeds(pool, list(guilds.values()))):
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # a process that should not post would have by now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    for shard, output in outputs.items():
        assert {channel for channel, _ in output.posts} == {channels[shard]}
        assert sum(embeds for _, embeds in output.posts) == expected


class FailingOnceChannels(RecordingChannels):
    """Fails the first post (Discord or the network down), then accepts every post; records the nonces."""

    def __init__(self) -> None:
        super().__init__()
        self.nonces: list[str] = []

    async def post(self, channel_id: int, message: Message, *, nonce: str) -> None:
        self.nonces.append(nonce)
        if len(self.nonces) == 1:
            raise RuntimeError("Discord is unreachable")
        await super().post(channel_id, message, nonce=nonce)


async def test_a_post_that_failed_is_sent_again_and_nothing_is_lost(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    async with pool.connection() as conn:
        feed = await store.create_feed(
            conn, guild_id=1, channel_id=100, wiki="dewiki", filters="", created_by=None
        )
    await ingest_file(db_url, CAPTURE, catalog=CATALOG)
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines()]
    expected = sum(
        1 for r in rows if r["wiki"] == "dewiki" and not r["bot"] and r["type"] in ("edit", "new", "log")
    )
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT max(arrival) FROM recent_changes WHERE wiki = 'dewiki'")
        [(newest,)] = await cursor.fetchall()

    output = FailingOnceChannels()
    poster = FeedPoster(pool, CATALOG, poll_interval=0.1, min_interval=0.0, retry_after_failure=0.1)
    task = asyncio.create_task(poster.run(output))
    try:
        async with asyncio.timeout(60):
            while (await _feeds(pool, [1]))[0].cursor != newest:
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # The failed message went again, with the same nonce, and every change was posted once.
    assert output.nonces[1] == output.nonces[0]
    assert sum(embeds for _, embeds in output.posts) == expected
    [done] = await _feeds(pool, [1])
    assert (done.id, done.posted, done.pending_to) == (feed.id, expected, None)


class CountingConnections:
    """The pool, counting the connections taken from it."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.taken = 0

    def connection(self) -> Any:
        self.taken += 1
        return self.pool.connection()


async def test_a_burst_of_notifications_wakes_each_feed_once_per_interval(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await store.create_feed(conn, guild_id=1, channel_id=100, wiki="dewiki", filters="", created_by=None)
    database = CountingConnections(pool)
    poster = FeedPoster(database, CATALOG, poll_interval=10.0, wake_interval=0.25)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(poster.run(RecordingChannels()))
    try:
        # A commit every 10 ms, a hundred times, as an idle ingester at a hundred events per second.
        for _ in range(100):
            poster.wake()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Each round reads the feeds once and the feed once: one round per quarter of a second (the first at
    # once), not one per notification.
    rounds = (loop.time() - started) / 0.25 + 1
    assert 2 <= database.taken <= 2 * int(rounds + 1) < 100
