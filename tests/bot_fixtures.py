"""Fixtures and row builders for the bot's tests: a pool, a core with a fixed clock, SQL inserts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bot.commands import CommandCore
from teston.core.partitions import day_of, ensure_partitions
from teston.core.wikis import WikiCatalog

CATALOG = WikiCatalog.load()
# "Now" for tests that do not replay a capture: the day of the 2025 sample capture.
NOW = datetime(2025, 5, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False, timeout=5) as opened:
        yield opened


@pytest.fixture
def core(pool: AsyncConnectionPool) -> CommandCore:
    return CommandCore(database=pool, catalog=CATALOG, prefix="!", clock=lambda: NOW)


def insert_change(
    conn: psycopg.Connection[Any],
    *,
    event_time: datetime,
    wiki: str = "enwiki",
    type: str = "edit",
    title: str | None = "Page",
    user_name: str | None = "Alice",
    bot: bool = False,
    comment: str | None = "",
    rcid: int | None = None,
    revision: tuple[int | None, int | None] = (1, 2),
    length: tuple[int | None, int | None] = (10, 20),
    log: tuple[str | None, str | None] = (None, None),
) -> None:
    """One `recent_changes` row, its day's partition created if needed; the caller commits."""
    found = CATALOG.by_dbname(wiki)
    assert found is not None, wiki
    ensure_partitions(conn, [day_of(event_time)])
    conn.execute(
        """
        INSERT INTO recent_changes (event_time, event_id, wiki, server_name, lang, project, type,
            namespace, title, user_name, bot, length_old, length_new, revision_old, revision_new, rcid,
            log_type, log_action, comment, raw)
        VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            event_time,
            uuid.uuid4(),
            wiki,
            found.server_name,
            found.code,
            found.project,
            type,
            title,
            user_name,
            bot,
            *length,
            *revision,
            rcid,
            *log,
            comment,
            Jsonb({}),
        ),
    )


def insert_rollup(
    conn: psycopg.Connection[Any],
    day: date,
    *,
    status: str = "final",
    incomplete: bool = False,
    computed_at: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO day_rollups (day, status, incomplete, events, wikis, computed_at) "
        "VALUES (%s, %s, %s, 0, 0, %s)",
        (day, status, incomplete, computed_at or datetime(2025, 1, 1, tzinfo=UTC)),
    )


def insert_day_stats(
    conn: psycopg.Connection[Any],
    day: date,
    wiki: str,
    *,
    changes: int,
    hourly: Sequence[int] | None = None,
    computed_at: datetime | None = None,
    top_pages: Sequence[tuple[str, int]] = (),
    **figures: int,
) -> None:
    """A `daily_wiki_stats` row (unnamed figures are 0) and its `daily_top_pages`."""
    columns = {
        "edits": 0,
        "new_pages": 0,
        "log_actions": 0,
        "categorize": 0,
        "other_types": 0,
        "bot_changes": 0,
        "anonymous_changes": 0,
        "human_changes": 0,
        "content_changes": 0,
        "other_namespace_changes": 0,
        "bytes_added": 0,
        "bytes_removed": 0,
        "net_bytes": 0,
        "distinct_editors": 0,
        "distinct_pages": 0,
        **figures,
    }
    query = sql.SQL(
        "INSERT INTO daily_wiki_stats (day, wiki, changes, hourly_changes, computed_at, {}) "
        "VALUES (%s, %s, %s, %s, %s, {})"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
    )
    conn.execute(
        query,
        (
            day,
            wiki,
            changes,
            list(hourly or [0] * 24),
            computed_at or datetime(2025, 1, 1, tzinfo=UTC),
            *columns.values(),
        ),
    )
    for rank, (title, count) in enumerate(top_pages, start=1):
        conn.execute(
            "INSERT INTO daily_top_pages (day, wiki, rank, namespace, title, changes)"
            " VALUES (%s, %s, %s, 0, %s, %s)",
            (day, wiki, rank, title, count),
        )
