"""How every analytics run is guarded and recorded, whatever it does and wherever it runs.

`run_recorded` wraps any job: a PostgreSQL advisory lock per job kind, held by the one connection the
run uses, keeps two TestON processes from running the same job at once; a scheduled slot already done
elsewhere is skipped, and every run (also the skipped ones) becomes a row of `job_runs` with its outcome
and figures. Only psycopg here: a process that has its jobs run in a child (`analytics.job_process`)
records and reports runs without loading the roll-up's libraries.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from teston.core.locks import job_lock_key
from teston.core.statuses import JobStatus

log = logging.getLogger(__name__)

# The jobs the schedule runs (`analytics.scheduler`), by the kind their runs are recorded under.
INTRADAY = "intraday"
NIGHTLY = "nightly"

Connect = Callable[[], contextlib.AbstractContextManager[psycopg.Connection]]


@dataclass
class JobResult:
    """What a job did: a row count, figures for `job_runs.details`, and per-day errors if any."""

    rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobRun:
    """One recorded run."""

    id: int
    kind: str
    status: JobStatus
    rows: int | None
    details: dict[str, Any]
    error: str | None


def _record(
    conn: psycopg.Connection,
    kind: str,
    status: JobStatus,
    *,
    day: date | None,
    details: dict[str, Any],
    error: str | None = None,
) -> int:
    with conn.transaction():
        [row] = conn.execute(
            """
            INSERT INTO job_runs (kind, day, status, started_at, finished_at, duration_ms, details, error)
            VALUES (%(kind)s, %(day)s, %(status)s, now(), CASE WHEN %(status)s <> %(running)s THEN now() END,
                    CASE WHEN %(status)s <> %(running)s THEN 0 END, %(details)s, %(error)s)
            RETURNING id
            """,
            {
                "kind": kind,
                "day": day,
                "status": status,
                "running": JobStatus.RUNNING,
                "details": Jsonb(details),
                "error": error,
            },
        ).fetchall()
    return int(row[0])


def _slot_done(conn: psycopg.Connection, kind: str, slot: datetime) -> bool:
    with conn.transaction():
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM job_runs"
            " WHERE kind = %s AND status = %s AND details->>'slot' = %s)",
            (kind, JobStatus.SUCCEEDED, slot.isoformat()),
        ).fetchone()
    return bool(row and row[0])


def _finish(
    conn: psycopg.Connection,
    run_id: int,
    status: JobStatus,
    rows: int,
    ms: float,
    details: Any,
    error: str | None,
) -> None:
    with conn.transaction():
        conn.execute(
            """
            UPDATE job_runs SET status = %s, rows = %s, finished_at = now(), duration_ms = %s,
                details = %s, error = %s
            WHERE id = %s
            """,
            (status, rows, ms, Jsonb(details), error, run_id),
        )


def _usable(conn: psycopg.Connection) -> bool:
    return not conn.closed and conn.info.transaction_status != TransactionStatus.UNKNOWN


def run_recorded(
    connect: Connect,
    kind: str,
    work: Callable[[psycopg.Connection], JobResult],
    *,
    day: date | None = None,
    slot: datetime | None = None,
    on_start: Callable[[int], None] | None = None,
) -> JobRun:
    """Run `work` under the job's advisory lock and record the run; never raises for the job's errors.

    One connection holds the lock, records the run and does the work (the lock is the session's, so
    the work's commits and rollbacks keep it): a run needs a single connection of the budget.
    `on_start` is told the run's id once its `running` row is committed, before the work starts.
    """
    base: dict[str, Any] = {"slot": slot.isoformat()} if slot else {}
    unrecorded: tuple[int, JobStatus, int, float, dict[str, Any], str | None] | None = None
    with connect() as conn:
        with conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", job_lock_key(kind)).fetchone()
        if not (row and row[0]):
            details = base | {"reason": "running in another process"}
            run_id = _record(conn, kind, JobStatus.SKIPPED, day=day, details=details)
            log.info("%s skipped: running in another process", kind)
            return JobRun(run_id, kind, JobStatus.SKIPPED, None, details, None)
        try:
            if slot is not None and _slot_done(conn, kind, slot):
                details = base | {"reason": "slot already run"}
                run_id = _record(conn, kind, JobStatus.SKIPPED, day=day, details=details)
                log.info("%s skipped: slot %s already run", kind, slot.isoformat())
                return JobRun(run_id, kind, JobStatus.SKIPPED, None, details, None)
            run_id = _record(conn, kind, JobStatus.RUNNING, day=day, details=base)
            if on_start is not None:
                on_start(run_id)
            started = time.perf_counter()
            error: str | None = None
            try:
                result = work(conn)
            except Exception as exc:
                log.exception("%s failed", kind)
                result = JobResult()
                error = "".join(traceback.format_exception_only(exc)).strip()
                if _usable(conn) and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
            if result.errors and error is None:
                error = "; ".join(result.errors)
            status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
            details = base | result.details
            outcome = (run_id, status, result.rows, (time.perf_counter() - started) * 1000, details, error)
            if _usable(conn):
                _finish(conn, *outcome)
            else:
                unrecorded = outcome  # the connection was lost: recorded on a new one below
            finished = JobRun(run_id, kind, status, result.rows, details, error)
        finally:
            if _usable(conn):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", job_lock_key(kind))
            # Otherwise the session, and the lock with it, is gone.
    if unrecorded is not None:
        with connect() as conn:
            _finish(conn, *unrecorded)
    return finished


def record_failure(
    connect: Connect,
    kind: str,
    error: str,
    *,
    run_id: int | None,
    seconds: float,
    details: dict[str, Any],
) -> JobRun:
    """Record as failed a run whose process ended before it recorded its outcome.

    With the `run_id` of its `running` row, that row is finished; without one (the run never got as far
    as recording itself), a failed row is added.
    """
    with connect() as conn:
        if run_id is None:
            added = _record(conn, kind, JobStatus.FAILED, day=None, details=details, error=error)
            return JobRun(added, kind, JobStatus.FAILED, None, details, error)
        _finish(conn, run_id, JobStatus.FAILED, 0, seconds * 1000, details, error)
    return JobRun(run_id, kind, JobStatus.FAILED, 0, details, error)
