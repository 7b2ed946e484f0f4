"""Kept answers over the real PostgreSQL: the ingester's and the roll-up's notices drop them at commit.

The command core keeps `!recent` and `!stats` answers only while `bot.notifications` follows the
database's notices on a LISTEN connection of its own, as `teston bot` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from analytics import rollup
from bot import queries
from bot.answers import DayStats, RecentChanges
from bot.command_reads import CommandReads
from bot.commands import DEFAULT_QUERY_TIMEOUT, CommandCore, Invoker
from bot.notifications import Notifications
from teston.cli.wiring import bot_pool
from teston.core.notices import wikis_named
from teston.core.settings import DatabaseSettings
from tests.bot_fixtures import CATALOG, insert_change, pool
from tests.replays import ingest_file, ingest_path

__all__ = ["pool"]

DATA = Path(__file__).parent / "data"
CAPTURE_2021 = DATA / "2021-08-27_all-wikis_1950.jsonl"
CAPTURE_2025 = DATA / "2025-05-03_sample_144.jsonl"
DAY = date(2021, 8, 27)
INVOKER = Invoker(user_id=1, guild_id=2)


@contextlib.asynccontextmanager
async def following(core: CommandCore, db_url: str) -> AsyncIterator[Notifications]:
    """Run the core's notifications until the block ends; return once they flow."""
    notifications = Notifications(
        lambda: psycopg.AsyncConnection.connect(db_url, autocommit=True),
        [core.reads],
        retry_after_failure=0.1,
    )
    task = asyncio.create_task(notifications.run())
    try:
        await until(lambda: core.reads.recent.following)
        yield notifications
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: object, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_each_commit_names_the_wikis_it_stored(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN recent_changes")
        ingest_path(db_url, CAPTURE_2021, catalog=CATALOG, batch_size=500)
        payloads = [notice.payload for notice in listener.notifies(timeout=2.0)]
    with psycopg.connect(db_url) as conn:
        stored = {wiki for (wiki,) in conn.execute("SELECT DISTINCT wiki FROM recent_changes")}
    assert len(payloads) == 4
    named = [wikis_named(payload) for payload in payloads]
    assert all(wikis is not None and "," not in "".join(wikis) for wikis in named)
    assert set().union(*(wikis or () for wikis in named)) == stored
    assert {"enwiki", "wikidatawiki", "commonswiki"} <= stored


async def test_recent_is_kept_until_the_ingester_stores_a_change_of_its_wiki(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    await ingest_file(db_url, CAPTURE_2021, catalog=CATALOG)
    core = CommandCore(database=pool, catalog=CATALOG, reads=CommandReads())
    async with following(core, db_url):
        first = await core.answer_text("!recent en 3", INVOKER)
        again = await core.answer_text("!recent en 3", INVOKER)
        assert isinstance(first, RecentChanges)
        assert again == first
        assert (core.reads.recent.counts.reads, core.reads.recent.counts.hits) == (1, 1)
        assert all(change.event_time.date() == DAY for change in first.changes)
        spanish = await core.answer_text("!recent es 3", INVOKER)

        await ingest_file(db_url, CAPTURE_2025, catalog=CATALOG)  # enwiki changes of 2025, no eswiki one

        async def newest_year() -> int:
            answer = await core.answer_text("!recent en 3", INVOKER)
            assert isinstance(answer, RecentChanges)
            return answer.changes[0].event_time.year

        years = []
        for _ in range(200):
            years.append(await newest_year())
            if years[-1] == 2025:
                break
            await asyncio.sleep(0.02)
        assert years[-1] == 2025
        assert await core.answer_text("!recent es 3", INVOKER) == spanish
        reads_before = core.reads.recent.counts.reads
        await core.answer_text("!recent es 3", INVOKER)
        assert core.reads.recent.counts.reads == reads_before  # eswiki's answer was still kept


async def test_stats_are_kept_until_the_day_is_rolled_up_again(
    pool: AsyncConnectionPool, db_url: str, tmp_path: Path
) -> None:
    await ingest_file(db_url, CAPTURE_2021, catalog=CATALOG)
    now = datetime(2021, 9, 1, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        rollup.rollup_day(conn, tmp_path, DAY, now=now)
    core = CommandCore(database=pool, catalog=CATALOG, reads=CommandReads())
    async with following(core, db_url):
        before = await core.answer_text(f"!stats {DAY} en", INVOKER)
        assert isinstance(before, DayStats)
        assert await core.answer_text(f"!stats {DAY} en", INVOKER) == before
        assert core.reads.stats.counts.hits == 1
        with psycopg.connect(db_url) as conn:
            insert_change(conn, event_time=datetime(2021, 8, 27, 23, 0, tzinfo=UTC), title="Late")
            conn.commit()
            # Not rolled up yet: the summary rows have not changed, the kept answer stands.
            assert await core.answer_text(f"!stats {DAY} en", INVOKER) == before
            rollup.rollup_day(conn, tmp_path, DAY, now=now + timedelta(hours=1))

        async def changes() -> int:
            answer = await core.answer_text(f"!stats {DAY} en", INVOKER)
            assert isinstance(answer, DayStats)
            return answer.figures.changes

        await until_value(changes, before.figures.changes + 1)


async def until_value(read: object, wanted: object) -> None:
    seen = []
    for _ in range(200):
        seen.append(await read())  # type: ignore[operator]
        if seen[-1] == wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"wanted {wanted}, saw {seen[-3:]}")


async def test_an_answer_showing_no_change_is_kept_until_a_roll_up_counts_its_wiki(
    pool: AsyncConnectionPool, db_url: str, tmp_path: Path
) -> None:
    await ingest_file(db_url, CAPTURE_2021, catalog=CATALOG)  # cewiki: 50 changes, all bots' or categories
    core = CommandCore(database=pool, catalog=CATALOG, reads=CommandReads())
    async with following(core, db_url):
        first = await core.answer_text("!recent ce", INVOKER)
        assert isinstance(first, RecentChanges)
        assert (first.changes, first.left_out, first.newest_day) == ((), 50, None)
        assert await core.answer_text("!recent ce", INVOKER) == first
        assert (core.reads.recent.counts.reads, core.reads.recent.counts.hits) == (1, 1)
        with psycopg.connect(db_url) as conn:
            rollup.rollup_day(conn, tmp_path, DAY, now=datetime(2021, 9, 1, tzinfo=UTC))

        async def newest_day() -> date | None:
            answer = await core.answer_text("!recent ce", INVOKER)
            assert isinstance(answer, RecentChanges)
            assert (answer.changes, answer.left_out) == ((), 50)
            return answer.newest_day

        await until_value(newest_day, DAY)


async def test_nothing_is_kept_while_the_notice_connection_is_down(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    await ingest_file(db_url, CAPTURE_2021, catalog=CATALOG)
    core = CommandCore(database=pool, catalog=CATALOG, reads=CommandReads())
    async with following(core, db_url):
        await core.answer_text("!recent en 3", INVOKER)
        assert len(core.reads.recent) == 1
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
            )
        await until(lambda: not core.reads.recent.following)
        assert len(core.reads.recent) == 0
        await core.answer_text("!recent en 3", INVOKER)
        # Back, it follows again and keeps what it reads from then on.
        await until(lambda: core.reads.recent.following)
        await core.answer_text("!recent en 3", INVOKER)
        assert len(core.reads.recent) == 1


async def test_a_read_alone_is_bounded_by_the_bot_pools_time_limit_and_leaves_its_connection_idle(
    db_url: str,
) -> None:
    async with bot_pool(db_url, DatabaseSettings(), max_size=1) as pool, pool.connection() as conn:
        shown = await (await conn.execute("SHOW statement_timeout")).fetchone()
        assert shown == (f"{int(DEFAULT_QUERY_TIMEOUT)}s",)
        await conn.commit()
        await queries.limit_session_statement_time(conn, 0.05)
        query = sql.SQL("SELECT %(text)s AS text, %(day)s::date + 1 AS next").format()
        text = "O'Brien'; --"
        assert await queries.fetch_alone(conn, query, {"text": text, "day": DAY}) == [
            {"text": text, "next": date(2021, 8, 28)}
        ]
        slow = sql.SQL("SELECT pg_sleep(%(seconds)s)").format()
        with pytest.raises(psycopg.errors.QueryCanceled):
            await queries.fetch_alone(conn, slow, {"seconds": 2})
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert not conn.autocommit
