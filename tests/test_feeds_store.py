"""Feeds over the real PostgreSQL: arrival order and the writer's notification, cursors, late events,
the per-server limit and the feed commands' permission checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from bot.answers import Problem
from bot.commands import CommandCore, Invoker
from bot.feeds import store
from bot.feeds.answers import MAX_FEEDS_PER_GUILD, FeedCreated, FeedList, FeedRemoved
from bot.requests import Command
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
