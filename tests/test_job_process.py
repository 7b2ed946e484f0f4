"""Scheduled jobs in a child process: the same rows and records as in the service, failures reported,
a hung child killed and reaped, and a service that never loads the roll-up's libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry

from analytics.job_process import ChildJobs
from analytics.metrics import JobMetrics
from analytics.scheduler import INTRADAY, NIGHTLY, AnalyticsScheduler, Schedule
from teston.core.statuses import JobStatus
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path
from tests.test_rollup import STATS_FIGURES, expected_figures, summary_rows

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"
# Late on the capture's day: the intraday job rolls it up as today, partial.
LATE_THAT_DAY = datetime(2021, 8, 27, 23, 0, tzinfo=UTC)
# After the nightly slot of the next day: the nightly job exports and finalizes the capture's day.
NEXT_NIGHT = datetime(2021, 8, 28, 1, 0, tzinfo=UTC)


def _scheduler(
    db_url: str,
    export_dir: Path,
    child: ChildJobs,
    registry: CollectorRegistry,
    now: datetime = LATE_THAT_DAY,
) -> AnalyticsScheduler:
    return AnalyticsScheduler(
        lambda: psycopg.connect(db_url),
        Schedule(export_dir=export_dir),
        clock=lambda: now,
        metrics=JobMetrics(registry, (INTRADAY, NIGHTLY)),
        child=child,
    )


def _job_runs(db_url: str) -> list[tuple[int, str, str, int | None, str | None, dict]]:
    with psycopg.connect(db_url) as conn:
        return [
            (id_, kind, status, rows, error, details)
            for id_, kind, status, rows, error, details in conn.execute(
                "SELECT id, kind, status, rows, error, details FROM job_runs ORDER BY id"
            ).fetchall()
        ]


def _children() -> set[int]:
    """This process's children, zombies included (a child not waited for stays listed)."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        found.update(int(pid) for pid in Path(f"/proc/self/task/{task}/children").read_text().split())
    return found


def test_the_intraday_job_in_a_child_writes_the_days_figures_and_is_recorded(
    db_url: str, tmp_path: Path
) -> None:
    ingest_path(db_url, CAPTURE, catalog=CATALOG)
    registry = CollectorRegistry()
    child = ChildJobs(url=db_url, timeout=timedelta(minutes=5))
    run = _scheduler(db_url, tmp_path / "exports", child, registry).run_intraday()

    assert run.status == JobStatus.SUCCEEDED, run.error
    assert (run.kind, run.rows, run.error) == (INTRADAY, 1950, None)
    # The run the service got back is the row the child recorded.
    [(run_id, kind, status, rows, error, details)] = _job_runs(db_url)
    assert (run_id, kind, status, rows, error) == (run.id, INTRADAY, "succeeded", 1950, None)
    assert details == run.details
    assert details["slot"] == datetime(2021, 8, 27, 23, 0, tzinfo=UTC).isoformat()
    assert [(day["day"], day["status"], day["events"]) for day in details["days"]] == [
        ("2021-08-27", "partial", 1950)
    ]
    assert details["max_rss_mib"] > 0
    # The figures in the summary tables are those of an independent pass over the capture.
    stats, _, _ = expected_figures(CAPTURE)
    with psycopg.connect(db_url) as conn:
        got = summary_rows(conn)
    assert {(row[0], row[1]): dict(zip(STATS_FIGURES, row[2:], strict=True)) for row in got["stats"]} == stats
    assert [row[:4] for row in got["rollups"]] == [(LATE_THAT_DAY.date(), "partial", False, 1950)]
    assert registry.get_sample_value("teston_job_runs_total", {"kind": INTRADAY, "status": "succeeded"}) == 1


def test_a_job_failing_in_its_child_is_recorded_and_reported_failed_with_its_error(
    db_url: str, tmp_path: Path
) -> None:
    ingest_path(db_url, CAPTURE, catalog=CATALOG)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("the export directory cannot be made here")
    registry = CollectorRegistry()
    child = ChildJobs(url=db_url, timeout=timedelta(minutes=5))
    scheduler = _scheduler(db_url, not_a_directory / "exports", child, registry, now=NEXT_NIGHT)
    run = scheduler.run_nightly()

    assert run.status == JobStatus.FAILED
    assert run.error is not None
    assert run.error.startswith("2021-08-27: ")
    assert str(not_a_directory) in run.error
    [(run_id, kind, status, _, error, _)] = _job_runs(db_url)
    assert (run_id, kind, status, error) == (run.id, NIGHTLY, "failed", run.error)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM daily_wiki_stats").fetchone() == (0,)
    assert registry.get_sample_value("teston_job_runs_total", {"kind": NIGHTLY, "status": "failed"}) == 1


def test_a_hung_child_is_killed_at_its_timeout_reaped_and_its_run_failed(db_url: str, tmp_path: Path) -> None:
    ingest_path(db_url, CAPTURE, catalog=CATALOG)
    registry = CollectorRegistry()
    before = _children()
    # The day's rows cannot be read while this transaction holds the table: the child's export waits.
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE recent_changes IN ACCESS EXCLUSIVE MODE")
        child = ChildJobs(url=db_url, timeout=timedelta(seconds=8))
        run = _scheduler(db_url, tmp_path / "exports", child, registry).run_intraday()
        assert _children() == before
        holder.rollback()

    assert run.status == JobStatus.FAILED
    assert run.error == "the job's process was killed after 8 s (JOB_TIMEOUT)"
    # The child had recorded its run as running: that row is the one finished as failed.
    [(run_id, kind, status, rows, error, details)] = _job_runs(db_url)
    assert (run_id, kind, status, rows, error) == (run.id, INTRADAY, "failed", 0, run.error)
    assert details == {"slot": LATE_THAT_DAY.isoformat()}
    assert registry.get_sample_value("teston_job_runs_total", {"kind": INTRADAY, "status": "failed"}) == 1
    # The killed child's connections went with it: its job lock is free, and the next run takes it.
    child = ChildJobs(url=db_url, timeout=timedelta(minutes=5))
    again = _scheduler(db_url, tmp_path / "exports", child, CollectorRegistry()).run_intraday()
    assert again.status == JobStatus.SUCCEEDED
    assert [status for _, _, status, _, _, _ in _job_runs(db_url)] == ["failed", "succeeded"]


def test_a_child_that_cannot_start_is_recorded_failed(db_url: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    missing = tmp_path / "no-python-here"
    child = ChildJobs(url=db_url, timeout=timedelta(minutes=1), python=str(missing))
    run = _scheduler(db_url, tmp_path / "exports", child, registry).run_nightly()

    assert run.status == JobStatus.FAILED
    assert run.error is not None
    assert run.error.startswith("the job's process did not start: ")
    assert str(missing) in run.error
    [(run_id, kind, status, rows, error, _)] = _job_runs(db_url)
    assert (run_id, kind, status, rows, error) == (run.id, NIGHTLY, "failed", None, run.error)
    assert registry.get_sample_value("teston_job_runs_total", {"kind": NIGHTLY, "status": "failed"}) == 1


def test_the_service_does_not_load_the_roll_ups_libraries() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, teston.cli, teston.cli.wiring, analytics.scheduler;"
            " print(sorted(m for m in ('polars', 'pyarrow', 'duckdb') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
