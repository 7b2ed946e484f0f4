"""The analytics jobs: which days each one rolls up, exports or drops.

The jobs are thin: which days to roll up, then `rollup.rollup_day` and
`retention.drop_expired_partitions`. How a run is guarded and recorded (`run_recorded`, `JobRun`,
`JobResult`) is `analytics.runs`, named here too for the callers of the jobs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from analytics import bookkeeping, retention, rollup
from analytics.runs import Connect, JobResult, JobRun, run_recorded

__all__ = ["Connect", "JobResult", "JobRun", "intraday", "nightly", "rollup_job", "run_recorded"]

log = logging.getLogger(__name__)


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
