"""The schedule: slots, job options, and two schedulers on one database running each slot once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from analytics import jobs
from analytics.scheduler import (
    INTRADAY,
    NIGHTLY,
    AnalyticsScheduler,
    Schedule,
    intraday_slot,
    nightly_slot,
)
from teston.cli.wiring import analytics_pool
from teston.core.settings import DatabaseSettings
from teston.core.statuses import JobStatus


def test_slots_are_the_same_in_every_process() -> None:
    five = timedelta(minutes=5)
    assert intraday_slot(datetime(2024, 5, 1, 10, 7, 59, tzinfo=UTC), five) == datetime(
        2024, 5, 1, 10, 5, tzinfo=UTC
    )
    at = time(0, 15)
    assert nightly_slot(datetime(2024, 5, 1, 0, 14, tzinfo=UTC), at) == datetime(
        2024, 4, 30, 0, 15, tzinfo=UTC
    )
    assert nightly_slot(datetime(2024, 5, 1, 0, 15, tzinfo=UTC), at) == datetime(
        2024, 5, 1, 0, 15, tzinfo=UTC
    )


def test_jobs_coalesce_run_alone_and_have_a_grace_period(tmp_path: Path) -> None:
    component = AnalyticsScheduler(lambda: psycopg.connect("dbname=unused"), Schedule(export_dir=tmp_path))
    scheduler = component.build()
    for job in scheduler.get_jobs():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time
        assert job.misfire_grace_time > 0
    assert {job.id for job in scheduler.get_jobs()} == {INTRADAY, NIGHTLY}


def test_a_job_already_running_elsewhere_is_skipped_and_recorded(db_url: str) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(conn: psycopg.Connection) -> jobs.JobResult:
        started.set()
        release.wait(10)
        return jobs.JobResult(rows=7, details={"figure": 1})

    runs: list[jobs.JobRun] = []
    worker = threading.Thread(
        target=lambda: runs.append(jobs.run_recorded(lambda: psycopg.connect(db_url), "t", slow))
    )
    worker.start()
    assert started.wait(10)
    second = jobs.run_recorded(lambda: psycopg.connect(db_url), "t", slow)
    release.set()
    worker.join(10)

    assert second.status == JobStatus.SKIPPED
    assert runs[0].status == JobStatus.SUCCEEDED
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT status, rows, details->>'figure', finished_at IS NOT NULL FROM job_runs ORDER BY id"
        ).fetchall()
    assert sorted(rows) == [("skipped", None, None, True), ("succeeded", 7, "1", True)]


def test_a_failing_job_is_recorded_with_its_error(db_url: str) -> None:
    def broken(conn: psycopg.Connection) -> jobs.JobResult:
        raise ValueError("no such day")

    run = jobs.run_recorded(lambda: psycopg.connect(db_url), "t", broken)
    assert run.status == JobStatus.FAILED
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT status, error FROM job_runs").fetchone() == (
            "failed",
            "ValueError: no such day",
        )
        # The lock was released: the next run goes ahead.
    assert (
        jobs.run_recorded(lambda: psycopg.connect(db_url), "t", lambda c: jobs.JobResult()).status
        == "succeeded"
    )


async def test_two_schedulers_at_once_run_each_job_once(db_url: str, tmp_path: Path) -> None:
    schedule = Schedule(export_dir=tmp_path, intraday_interval=timedelta(seconds=1))
    pools = [ConnectionPool(db_url, min_size=1, max_size=3, open=True) for _ in range(2)]
    try:
        components = [AnalyticsScheduler(pool.connection, schedule) for pool in pools]
        for component in components:
            await component.start()
        await asyncio.sleep(3.2)
        for component in components:
            await component.stop()
    finally:
        for pool in pools:
            pool.close()

    with psycopg.connect(db_url) as conn:
        runs = conn.execute(
            "SELECT kind, status, details->>'slot' FROM job_runs WHERE status <> 'running'"
        ).fetchall()
    succeeded = Counter((kind, slot) for kind, status, slot in runs if status == "succeeded")
    assert succeeded, runs
    assert set(succeeded.values()) == {1}, runs
    assert sum(1 for kind, _ in succeeded if kind == NIGHTLY) == 1
    assert sum(1 for kind, _ in succeeded if kind == INTRADAY) >= 2
    assert {status for _, status, _ in runs} <= {"succeeded", "skipped"}
    # Every slot that fired in both schedulers was skipped by one of them.
    skipped = Counter((kind, slot) for kind, status, slot in runs if status == "skipped")
    assert skipped[(NIGHTLY, next(slot for kind, slot in succeeded if kind == NIGHTLY))] == 1


def _database(**changes: object) -> DatabaseSettings:
    return DatabaseSettings().model_copy(update=changes)


def test_the_pool_holds_the_schedules_share_of_the_budget() -> None:
    pool = analytics_pool("dbname=unused", DatabaseSettings(), 2)
    assert (pool.min_size, pool.max_size) == (0, 2)
    assert pool.max_idle == DatabaseSettings().max_idle_time.total_seconds()


def _backends(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_pool_connects_only_when_a_job_runs(db_url: str, tmp_path: Path) -> None:
    settings = _database(max_open_conns=5)
    with analytics_pool(db_url, settings, 1) as pool:
        assert _backends(db_url) == 0
        component = AnalyticsScheduler(pool.connection, Schedule(export_dir=tmp_path), workers=1)
        assert component.run_intraday().status == JobStatus.SUCCEEDED
        assert _backends(db_url) == 1
