"""DB_MAX_OPEN_CONNS is honoured: the connections one TestON process opens never exceed it."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from analytics import jobs
from analytics.scheduler import INTRADAY, NIGHTLY, AnalyticsScheduler, Schedule
from teston.cli.wiring import analytics_pool, discord_bot_service
from teston.core.connections import TooFewConnections, share_connections
from teston.core.settings import DatabaseSettings, load_settings
from tests.bot_fixtures import CATALOG
from tests.conftest import DATA_DIR
from tests.fakestream import FakeEventStreams, read_capture
from tests.replays import ingest_path


def test_the_shares_fit_in_the_budget_and_give_every_part_one() -> None:
    for max_open in range(1, 60):
        for ingestion, sink, analytics, bot in itertools.product((False, True), repeat=4):
            parts = ingestion + sink + analytics + bot
            running = {"ingestion": ingestion, "sink": sink, "analytics": analytics, "bot": bot}
            if max_open < parts:
                with pytest.raises(TooFewConnections, match=f"DB_MAX_OPEN_CONNS must be at least {parts}"):
                    share_connections(max_open, **running)
                continue
            budget = share_connections(max_open, **running)
            assert budget.total <= max_open
            assert (budget.ingestion >= 1) == ingestion
            assert budget.ingestion <= 1
            assert (budget.sink >= 1) == sink
            assert budget.sink <= 1
            assert (budget.analytics >= 1) == analytics
            assert budget.analytics <= 2
            assert (budget.bot >= 1) == bot
            if bot:
                assert budget.total == max_open  # what is left goes to the bot's pool
    everything = share_connections(10, ingestion=True, analytics=True, bot=True)
    assert (everything.ingestion, everything.analytics, everything.bot) == (1, 2, 7)
    least = share_connections(3, ingestion=True, analytics=True, bot=True)
    assert (least.ingestion, least.analytics, least.bot) == (1, 1, 1)


class BackendSampler:
    """The most client connections to the database seen at once (besides the sampler's own), on a thread."""

    def __init__(self, db_url: str) -> None:
        self._conn = psycopg.connect(db_url, autocommit=True)
        self._stop = threading.Event()
        self.most = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self, query: str) -> int:
        row = self._conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def backends(self) -> int:
        return self.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.backends())
            time.sleep(0.005)

    def __enter__(self) -> BackendSampler:
        # A connection closed just before (the test's own) may take a moment to leave pg_stat_activity.
        deadline = time.monotonic() + 30
        while self.backends() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()


def test_the_schedule_runs_both_jobs_on_one_connection(db_url: str, tmp_path: Path) -> None:
    ingest_path(db_url, DATA_DIR / "2023-07-29_enwiki_100.jsonl")
    settings = DatabaseSettings().model_copy(update={"max_open_conns": 1})
    budget = share_connections(settings.max_open_conns, analytics=True)
    with (
        BackendSampler(db_url) as sampler,
        analytics_pool(db_url, settings, budget.analytics) as pool,
    ):
        component = AnalyticsScheduler(
            pool.connection, Schedule(export_dir=tmp_path), workers=budget.analytics
        )
        runs: list[jobs.JobRun] = []
        threads = [
            threading.Thread(target=lambda run=run: runs.append(run()))
            for run in (component.run_nightly, component.run_intraday)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted((run.kind, run.status) for run in runs) == [(INTRADAY, "succeeded"), (NIGHTLY, "succeeded")]
    assert [day["events"] for run in runs if run.kind == NIGHTLY for day in run.details["days"]] == [100]
    assert sampler.most == 1


async def _up(db_url: str, env: dict[str, str], sampler: BackendSampler, until: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "teston", "up", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(sampler.count, until):
            assert time.monotonic() < deadline, "teston up did not get there in time"
            assert process.returncode is None
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, stderr.decode()


async def test_teston_up_stays_within_db_max_open_conns(db_url: str) -> None:
    recorded = read_capture(DATA_DIR / "2021-08-27_all-wikis_1950.sse")[:300]
    async with FakeEventStreams(recorded) as server:
        env = {
            **os.environ,
            "DB_ADDR": db_url,
            "STREAM_URL": server.url,
            "METRICS_PORT": "0",
            "TESTON_CONTACT": "https://example.org/teston-tests",
            "INGEST_FLUSH_INTERVAL": "100ms",
            "ROLLUP_INTERVAL": "1s",
            "DB_MAX_OPEN_CONNS": "2",
        }
        # Everything ingested, and an intraday roll-up done after it (the nightly one ran at start).
        until = (
            "SELECT (SELECT count(*) FROM recent_changes) = 300"
            " AND EXISTS (SELECT 1 FROM job_runs WHERE kind = 'intraday' AND status = 'succeeded'"
            " AND started_at > (SELECT max(last_received_at) FROM day_arrivals))"
        )
        with BackendSampler(db_url) as sampler:
            code, stderr = await _up(db_url, env, sampler, until)
        assert code == 0, stderr[-2000:]
        assert sampler.most == 2

    # Ingestion and the schedule cannot both run on one connection: refused at start, nothing started.
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "teston", "up"],
        env=env | {"DB_MAX_OPEN_CONNS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "DB_MAX_OPEN_CONNS=1 is too low" in refused.stderr
    assert "DB_MAX_OPEN_CONNS must be at least 2" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(("share", "pool_size", "listens"), [(1, 1, False), (2, 1, True), (5, 4, True)])
def test_the_bots_pool_and_its_feeds_listener_fit_in_its_share(
    share: int, pool_size: int, listens: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A share of one connection is all the pool's: the feeds then find new changes by polling alone.
    monkeypatch.setenv("DISCORD_TOKEN", "test-token")
    service = discord_bot_service(
        load_settings(env_file=None), "postgresql://db/teston", catalog=CATALOG, connections=share
    )
    assert service._pool.max_size == pool_size
    assert (service._listen is not None) == listens
    assert pool_size + listens <= share
