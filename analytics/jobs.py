"""The analytics jobs and how each run is guarded and recorded.

`run_recorded` wraps any job: a PostgreSQL advisory lock per job kind, held by the one connection the
run uses, keeps two TestON processes from running the same job at once; a scheduled slot already done
elsewhere is skipped, and every run (also the skipped ones) becomes a row of `job_runs` with its outcome
and figures. The jobs themselves are thin: which days to roll up, then `rollup.rollup_day` and
`retention.drop_expired_partitions`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from analytics import bookkeeping, retention, rollup
from teston.core.locks import job_lock_key
from teston.core.statuses import JobStatus

log = logging.getLogger(__name__)

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
) -> JobRun:
    """Run `work` under the job's advisory lock and record the run; never raises for the job's errors.

    One connection holds the lock, records the run and does the work (the lock is the session's, so
    the work's commits and rollbacks keep it): a run needs a single connection of the budget.
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


def _describe(result: rollup.DayRollup) -> dict[str, Any]:
    return {
        "day": result.day.isoformat(),
        "status": result.status,
        "events": result.events,
        "wikis": result.wikis,
        "incomplete": result.incomplete,
        "seconds": round(result.seconds, 3),
    }


def _roll_up(
    conn: psycopg.Connection,
    export_dir: Path,
    days: list[date],
    outcome: JobResult,
    *,
    now: datetime,
    partial: bool = False,
    on_day: Callable[[rollup.DayRollup | rollup.NoData], None] | None = None,
    engine: rollup.FiguresEngine | None = None,
) -> None:
    """Roll up each day; one day's failure is recorded and does not stop the others.

    Days without data are listed under `no_data`: they are not rolled up, and that is no error.
    With an `engine`, every day is staged (exported) first and the engine computes all their
    figures at once (one Spark job for many days).
    """
    outcome.details.setdefault("days", [])
    if engine is not None:
        _roll_up_together(
            conn, export_dir, days, outcome, now=now, partial=partial, on_day=on_day, engine=engine
        )
        return
    for day in days:
        try:
            result = rollup.rollup_day(conn, export_dir, day, now=now, partial=partial)
        except Exception as exc:
            _failed(conn, outcome, day, exc)
            continue
        _rolled(outcome, result, on_day)


def _failed(conn: psycopg.Connection, outcome: JobResult, day: date, exc: Exception) -> None:
    log.error("roll-up of %s failed", day, exc_info=exc)
    outcome.errors.append(f"{day}: {exc}")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.rollback()


def _rolled(
    outcome: JobResult,
    result: rollup.DayRollup | rollup.NoData,
    on_day: Callable[[rollup.DayRollup | rollup.NoData], None] | None,
) -> None:
    rolled = outcome.details.setdefault("days", [])
    if isinstance(result, rollup.NoData):
        outcome.details.setdefault("no_data", []).append(result.day.isoformat())
    else:
        outcome.rows += result.events
        rolled.append(_describe(result))
    if on_day:
        on_day(result)


def _roll_up_together(
    conn: psycopg.Connection,
    export_dir: Path,
    days: list[date],
    outcome: JobResult,
    *,
    now: datetime,
    partial: bool = False,
    on_day: Callable[[rollup.DayRollup | rollup.NoData], None] | None,
    engine: rollup.FiguresEngine,
) -> None:
    """Stage every day, compute the staged days' figures in one call of `engine`, then write each day."""
    with contextlib.ExitStack() as scratch:
        staged: dict[date, rollup.StagedDay] = {}
        for day in days:
            try:
                result = scratch.enter_context(
                    rollup.staged_day(conn, export_dir, day, computed_at=now, partial=partial)
                )
            except Exception as exc:
                _failed(conn, outcome, day, exc)
                continue
            if isinstance(result, rollup.NoData):
                _rolled(outcome, result, on_day)
            else:
                staged[day] = result
        if not staged:
            return
        try:
            figures = engine({day: each.file.path for day, each in staged.items()})
        except Exception as exc:
            for day in staged:
                _failed(conn, outcome, day, exc)
            return
        for day, each in staged.items():
            try:
                written = rollup.record_figures(conn, each, figures[day], computed_at=now)
            except Exception as exc:
                _failed(conn, outcome, day, exc)
                continue
            _rolled(outcome, written, on_day)


def rollup_job(
    export_dir: Path,
    days: list[date],
    *,
    now: datetime | None = None,
    on_day: Callable[[rollup.DayRollup | rollup.NoData], None] | None = None,
    engine: rollup.FiguresEngine | None = None,
) -> Callable[[psycopg.Connection], JobResult]:
    """Roll up the given days (final if closed, partial if today): `teston rollup`.

    `engine`: computes the figures of all the days at once (Spark); by default, each day in turn.
    """

    def work(conn: psycopg.Connection) -> JobResult:
        outcome = JobResult()
        moment = now or datetime.now(UTC)
        _roll_up(conn, export_dir, days, outcome, now=moment, on_day=on_day, engine=engine)
        return outcome

    return work


def intraday(conn: psycopg.Connection, export_dir: Path, *, now: datetime | None = None) -> JobResult:
    """Refresh today (and yesterday until it is final) as partial; re-finalize days that went stale.

    Today and yesterday are rolled up only if they have data: a day nobody collected gets no row.
    """
    moment = now or datetime.now(UTC)
    today = rollup.today_utc(moment)
    yesterday = today - timedelta(days=1)
    outcome = JobResult()
    _roll_up(conn, export_dir, [today], outcome, now=moment)
    if not bookkeeping.is_final(conn, yesterday):
        _roll_up(conn, export_dir, [yesterday], outcome, now=moment, partial=True)
    # Late events (or a gap recorded later) for a finalized day: export and roll it up again.
    stale = bookkeeping.stale_days(conn)
    outcome.details["stale"] = [day.isoformat() for day in stale]
    _roll_up(conn, export_dir, stale, outcome, now=moment)
    return outcome


def nightly(
    conn: psycopg.Connection,
    export_dir: Path,
    *,
    retention_days: int,
    now: datetime | None = None,
) -> JobResult:
    """Export and finalize every closed day that needs it, then drop raw partitions past retention."""
    moment = now or datetime.now(UTC)
    today = rollup.today_utc(moment)
    outcome = JobResult()
    _roll_up(conn, export_dir, bookkeeping.days_to_finalize(conn, today), outcome, now=moment)
    kept = retention.drop_expired_partitions(conn, export_dir, today=today, retention_days=retention_days)
    outcome.details["dropped"] = [day.isoformat() for day in kept.dropped]
    outcome.details["kept"] = {day.isoformat(): reason for day, reason in kept.kept.items()}
    return outcome
