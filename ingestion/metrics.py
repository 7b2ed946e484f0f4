"""What the ingester exposes to Prometheus (served by `teston.core.monitoring.MetricsServer`).

Metrics live in a registry passed in, never in prometheus_client's global one, so two ingesters (or two
tests) in one process do not collide.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingestion.backoff import Failure
from teston.core.monitoring import Health, MetricsServer

# The endpoint lives in teston.core.monitoring (one per process, whatever its roles); still importable here.
__all__ = ["Health", "IngestMetrics", "MetricsServer"]

_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The live stream is normally seconds behind; minutes mean a backlog, hours a replay after an outage.
_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


class IngestMetrics:
    """The ingester's counters, histograms and gauges, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "teston_ingest_events",
            "Events parsed into rows, by wiki and change type.",
            ["wiki", "type"],
            registry=registry,
        )
        self.rejected = Counter(
            "teston_ingest_rejected_events", "Events quarantined in rejected_events.", registry=registry
        )
        self.canary = Counter(
            "teston_ingest_canary_events", "Canary events dropped (meta.domain canary).", registry=registry
        )
        self.duplicates = Counter(
            "teston_ingest_duplicate_events",
            "Rows dropped because their event id was already stored.",
            registry=registry,
        )
        self.inserted = Counter(
            "teston_ingest_inserted_events", "Rows newly stored in recent_changes.", registry=registry
        )
        self.commit_seconds = Histogram(
            "teston_ingest_batch_commit_seconds",
            "Time to commit one batch (COPY, insert, cursor).",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        )
        self.lag_seconds = Histogram(
            "teston_ingest_event_lag_seconds",
            "Now minus the event's time, on arrival from the live stream.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.reconnects = Counter(
            "teston_ingest_reconnects",
            "Reconnections to the event stream, by reason.",
            ["reason"],
            registry=registry,
        )
        self.database_outages = Counter(
            "teston_ingest_database_outages",
            "Times the writer lost PostgreSQL and had to retry a batch.",
            registry=registry,
        )
        self.last_event_time = Gauge(
            "teston_ingest_last_event_timestamp_seconds",
            "Unix time of the newest event committed.",
            registry=registry,
        )
        self.gaps = Counter(
            "teston_ingest_gaps", "Stretches of time the stream could no longer replay.", registry=registry
        )

    def count_reconnect(self, failure: Failure) -> None:
        self.reconnects.labels(reason=failure.value).inc()

    def count_outage(self) -> None:
        self.database_outages.inc()

    def count_events(self, wikis_and_types: Iterable[tuple[str, str]]) -> None:
        for (wiki, kind), n in Tally(wikis_and_types).items():
            self.events.labels(wiki=wiki, type=kind).inc(n)

    def observe_lags(self, now: datetime, event_times: Iterable[datetime]) -> None:
        observe = self.lag_seconds.observe
        for moment in event_times:
            observe(max((now - moment).total_seconds(), 0.0))
