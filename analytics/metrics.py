"""What the analytics schedule exposes to Prometheus: each job's runs, durations and last success, and
how far behind the newest final day is.

The finalisation lag is computed when Prometheus scrapes, from the newest final day seen by the last
run and the clock, so it keeps growing after midnight even if no job runs any more.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from analytics.runs import JobRun
from teston.core.statuses import JobStatus

# Intraday runs take seconds; a nightly export of a busy day takes minutes.
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SKIPPED)


class JobMetrics:
    """The schedule's metrics, registered in `registry`, for the jobs named in `kinds`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        kinds: tuple[str, ...],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._newest_final: date | None = None
        self.runs = Counter(
            "teston_job_runs",
            "Job runs by kind (intraday, nightly) and outcome (succeeded, failed, skipped).",
            ["kind", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "teston_job_duration_seconds",
            "Wall time of a job run that was not skipped, lock and bookkeeping included.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "teston_job_last_success_timestamp_seconds",
            "Unix time the job last finished successfully (0: not since the process started).",
            ["kind"],
            registry=registry,
        )
        self.last_failure = Gauge(
            "teston_job_last_failure_timestamp_seconds",
            "Unix time the job last failed (0: not since the process started).",
            ["kind"],
            registry=registry,
        )
        # Series exist from the start, so rules can compare them before the first run.
        for kind in kinds:
            for status in STATUSES:
                self.runs.labels(kind=kind, status=status)
            self.duration.labels(kind=kind)
            self.last_success.labels(kind=kind).set(0)
            self.last_failure.labels(kind=kind).set(0)
        self.newest_final_day = Gauge(
            "teston_rollup_newest_final_day_timestamp_seconds",
            "Unix time of the start (00:00 UTC) of the newest day whose roll-up is final.",
            registry=registry,
        )
        self.newest_final_day.set_function(self._newest_final_timestamp)
        self.final_day_lag = Gauge(
            "teston_rollup_final_day_lag_days",
            "Days from the newest final day to today (UTC): 1 once yesterday is final.",
            registry=registry,
        )
        self.final_day_lag.set_function(self._final_day_lag)

    def observe_run(self, run: JobRun, seconds: float) -> None:
        """Count one recorded run; a skipped run has no duration and changes no last-run time."""
        self.runs.labels(kind=run.kind, status=run.status).inc()
        if run.status == JobStatus.SKIPPED:
            return
        self.duration.labels(kind=run.kind).observe(seconds)
        now = self._clock().timestamp()
        if run.status == JobStatus.SUCCEEDED:
            self.last_success.labels(kind=run.kind).set(now)
        else:
            self.last_failure.labels(kind=run.kind).set(now)

    def set_newest_final_day(self, day: date | None) -> None:
        self._newest_final = day

    def _newest_final_timestamp(self) -> float:
        day = self._newest_final
        return math.nan if day is None else datetime.combine(day, time(0), tzinfo=UTC).timestamp()

    def _final_day_lag(self) -> float:
        day = self._newest_final
        # NaN (no sample value that compares true) until a day is final: a new install raises no alert.
        return math.nan if day is None else float((self._clock().astimezone(UTC).date() - day).days)
