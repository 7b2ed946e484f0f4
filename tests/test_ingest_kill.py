"""`teston ingest` killed with SIGKILL at random moments and restarted: every event stored exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time

import psycopg

from tests.conftest import DATA_DIR
from tests.fakestream import FakeEventStreams, read_capture

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"
KILLS = 4


def _stored(db_url: str) -> tuple[list[str], str | None]:
    with psycopg.connect(db_url) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT event_id FROM recent_changes")]
        row = conn.execute("SELECT last_event_id FROM stream_cursors").fetchone()
    return ids, row[0] if row else None


async def _start(db_url: str, url: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "DB_ADDR": db_url,
        "METRICS_PORT": "0",
        "TESTON_CONTACT": "https://example.org/teston-tests",
        "INGEST_FLUSH_INTERVAL": "100ms",
        "INGEST_BATCH_SIZE": "200",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "teston",
        "ingest",
        "--source",
        url,
        "--no-progress",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _wait_for(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(db_url: str) -> None:
    recorded = read_capture(CAPTURE)
    first_index = {}
    for index, event in enumerate(recorded):
        first_index.setdefault(event.id, index)
    rng = random.Random(20210827)
    # Paced so that the stream lasts a few seconds and every kill lands mid-stream.
    async with FakeEventStreams(recorded, pace=0.001, drop_every=400) as server:
        for _ in range(KILLS):
            process = await _start(db_url, server.url)
            try:
                connections = len(server.requests)
                await _wait_for(lambda c=connections: len(server.requests) > c, timeout=20)
                await asyncio.sleep(rng.uniform(0.05, 0.8))
            finally:
                process.kill()
                await process.wait()
            stored, cursor = await asyncio.to_thread(_stored, db_url)
            assert len(stored) == len(set(stored))
            if cursor is not None:
                # Atomicity: the cursor never runs ahead of the rows. Everything up to where the stream
                # resumes for this cursor is stored.
                resume_from = first_index[cursor]
                assert {e.meta_id for e in recorded[: resume_from + 1]} <= set(stored)

        assert 0 < len((await asyncio.to_thread(_stored, db_url))[0]) < len(recorded)
        process = await _start(db_url, server.url)
        try:
            last_id = recorded[-1].id

            def finished() -> bool:
                ids, cursor = _stored(db_url)
                return cursor == last_id and len(ids) == len(recorded)

            deadline = time.monotonic() + 30
            while not await asyncio.to_thread(finished):
                assert time.monotonic() < deadline, "the restarted ingester did not catch up"
                await asyncio.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(process.communicate(), 15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert process.returncode == 0
    assert out.decode().startswith("ingested ")
    stored, cursor = _stored(db_url)
    assert sorted(stored) == sorted(e.meta_id for e in recorded)
    assert cursor == recorded[-1].id
    assert server.max_concurrent == 1
    assert len([r for r in server.requests if r.status == 200]) >= KILLS + 1
