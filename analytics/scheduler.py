"""The analytics schedule: the intraday refresh every few minutes and the nightly export and retention.

APScheduler 3 runs the jobs on worker threads beside the event loop, each job coalesced (a backlog of
missed runs is one run), one instance at a time, with a misfire grace period. Across processes the
jobs' advisory locks and scheduled slots (see `runs.run_recorded`) make each slot run once. Given
`ChildJobs`, each run happens in a child process of its own (`analytics.job_process`), bounded by a
time limit, and the service's memory stays as it was before the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import perf_counter

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from analytics import bookkeeping
from analytics.job_process import ChildJobs, JobRequest, run_here, run_in_child
from analytics.metrics import JobMetrics
from analytics.runs import INTRADAY, NIGHTLY, Connect, JobRun

__all__ = ["INTRADAY", "NIGHTLY", "AnalyticsScheduler", "ChildJobs", "Schedule"]

log = logging.getLogger(__name__)

# Interval slots are counted from a fixed instant so that every process agrees on them.
SLOT_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
NIGHTLY_MISFIRE_GRACE = timedelta(hours=6)


@dataclass(frozen=True)
class Schedule:
    """When the jobs run and what they need."""

    export_dir: Path
    retention_days: int = 30
    intraday_interval: timedelta = timedelta(minutes=5)
    nightly_at: time = time(0, 15)


def intraday_slot(moment: datetime, interval: timedelta) -> datetime:
    """The start of the intraday slot `moment` falls in."""
    slots = (moment - SLOT_ANCHOR) // interval
    return SLOT_ANCHOR + slots * interval


def nightly_slot(moment: datetime, at: time) -> datetime:
    """The latest nightly run time at or before `moment`."""
    moment = moment.astimezone(UTC)
    today = datetime.combine(moment.date(), at, tzinfo=UTC)
    return today if today <= moment else today - timedelta(days=1)


class _InFlight:
    """Counts running jobs so that stopping can wait for them to finish."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = threading.Condition()

    def run(self, job: Callable[[], object]) -> None:
        with self._idle:
            self._running += 1
        try:
            job()
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)


class AnalyticsScheduler:
    """The schedule as a `teston up` component: `start`, `wait`, `stop`."""

    name = "scheduler"

    def __init__(
        self,
        connect: Connect,
        schedule: Schedule,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = 2,
        metrics: JobMetrics | None = None,
        child: ChildJobs | None = None,
    ) -> None:
        """`child`: run each job in a child process of its own; without it, in this process."""
        self._connect = connect
        self._child = child
        self._metrics = metrics
        self._schedule = schedule
        self._clock = clock
        self.workers = workers
        self._inflight = _InFlight()
        self._stopped = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None

    def _run(self, kind: str, slot: datetime, now: datetime) -> JobRun:
        request = JobRequest(
            kind=kind,
            now=now,
            slot=slot,
            export_dir=self._schedule.export_dir,
            retention_days=self._schedule.retention_days,
        )
        started = perf_counter()
        if self._child is not None:
            run = run_in_child(self._connect, request, self._child)
        else:
            run = run_here(self._connect, request)
        if self._metrics is not None:
            self._metrics.observe_run(run, perf_counter() - started)
            self._observe_final_day(self._metrics)
        return run

    def _observe_final_day(self, metrics: JobMetrics) -> None:
        # A database too busy to say is no reason to fail the job that just ran; the next run tries again.
        with contextlib.suppress(psycopg.Error), self._connect() as conn:
            metrics.set_newest_final_day(bookkeeping.newest_final_day(conn))

    def run_intraday(self) -> JobRun:
        now = self._clock()
        return self._run(INTRADAY, intraday_slot(now, self._schedule.intraday_interval), now)

    def run_nightly(self) -> JobRun:
        now = self._clock()
        return self._run(NIGHTLY, nightly_slot(now, self._schedule.nightly_at), now)

    def build(self) -> AsyncIOScheduler:
        """The APScheduler instance with both jobs (not started)."""
        schedule = self._schedule
        interval = max(schedule.intraday_interval, timedelta(seconds=1))
        scheduler = AsyncIOScheduler(
            executors={"default": ThreadPoolExecutor(self.workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.add_job(
            self._inflight.run,
            IntervalTrigger(seconds=interval.total_seconds(), start_date=SLOT_ANCHOR, timezone=UTC),
            args=[self.run_intraday],
            id=INTRADAY,
            name="intraday roll-up",
            coalesce=True,
            max_instances=1,
            # A run later than half an interval would fall in the next slot: skip it instead.
            misfire_grace_time=max(1, int(interval.total_seconds() / 2)),
        )
        scheduler.add_job(
            self._inflight.run,
            CronTrigger(
                hour=schedule.nightly_at.hour,
                minute=schedule.nightly_at.minute,
                second=schedule.nightly_at.second,
                timezone=UTC,
            ),
            args=[self.run_nightly],
            id=NIGHTLY,
            name="nightly export, finalization and retention",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(NIGHTLY_MISFIRE_GRACE.total_seconds()),
            # At start-up, catch up on a night that was missed; a slot already run is skipped.
            next_run_time=self._clock(),
        )
        return scheduler

    async def start(self) -> None:
        self._stopped.clear()
        self.scheduler = self.build()
        self.scheduler.start()

    async def wait(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # A job in progress finishes (its transaction commits or rolls back) before we return.
        await asyncio.to_thread(self._inflight.wait_idle)
        self._stopped.set()
