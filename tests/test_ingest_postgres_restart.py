"""PostgreSQL stopped and restarted while events stream in: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiohttp
import psycopg

from ingestion.backoff import ReconnectPolicy
from ingestion.client import EventStreamClient, user_agent
from ingestion.pipeline import IngestPipeline, PipelineOptions
from ingestion.resilient_writer import ResilientWriter
from teston.cli.wiring import writer_connector
from teston.core import database
from teston.core.embedded import EmbeddedPostgres
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR
from tests.fakestream import FakeEventStreams, read_capture

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"
FAST = ReconnectPolicy(initial=0.05, maximum=0.5)
# Unlike the suite's server, commits here must survive an immediate stop (a crash of PostgreSQL, not of the
# machine): with `synchronous_commit = off` PostgreSQL itself may forget acknowledged commits.
DURABLE_ENOUGH = {"fsync": "off", "full_page_writes": "off"}


def _count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


async def _wait_for_count(url: str, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(_count, url) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} rows in time"
        await asyncio.sleep(0.05)


async def test_postgres_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg", settings=DURABLE_ENOUGH)
    url = await asyncio.to_thread(postgres.start)
    try:
        await asyncio.to_thread(database.upgrade, url)
        recorded = read_capture(CAPTURE)
        writer = ResilientWriter(writer_connector(url), policy=FAST, rng=random.Random(1))
        async with (
            FakeEventStreams(recorded, pace=0.002, drop_every=700) as server,
            aiohttp.ClientSession() as session,
        ):
            client = EventStreamClient(
                session,
                server.url,
                user_agent=user_agent("TestON/0.1.0 (https://example.org/teston-tests)"),
                policy=FAST,
                rng=random.Random(2),
            )
            pipeline = IngestPipeline(
                client,
                writer,
                WikiCatalog.load(),
                options=PipelineOptions(batch_size=100, flush_interval=0.05),
            )
            task = asyncio.create_task(pipeline.run())
            try:
                await _wait_for_count(url, 200, timeout=20)
                await asyncio.to_thread(postgres.stop, mode="immediate")
                stopped_with = server.high_water
                await asyncio.sleep(1.0)  # events keep arriving while the database is away
                assert server.high_water > stopped_with
                await asyncio.to_thread(postgres.start)
                await _wait_for_count(url, len(recorded), timeout=30)
            finally:
                pipeline.stop()
                summary = await asyncio.wait_for(task, 15)
        with psycopg.connect(url) as conn:
            ids = [str(r[0]) for r in conn.execute("SELECT event_id FROM recent_changes")]
            (cursor,) = conn.execute("SELECT last_event_id FROM stream_cursors").fetchone() or (None,)
        assert sorted(ids) == sorted(e.meta_id for e in recorded)
        assert cursor == recorded[-1].id
        assert writer.outages >= 1
        # A commit whose acknowledgement was lost in the crash is retried and then counts as duplicates.
        assert summary.ingested <= len(recorded)
        writer.close()
    finally:
        await asyncio.to_thread(postgres.stop, mode="immediate")
