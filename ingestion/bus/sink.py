"""`teston sink`: consume the bus, store with the COPY writer, acknowledge only what PostgreSQL committed.

Any number of sinks share one durable consumer (JetStream) or consumer group (Kafka), so each message
goes to one of them. A batch is acknowledged after its transaction commits: a sink that dies mid-batch
leaves its messages unacknowledged and the bus delivers them again (to it or another sink), and
PostgreSQL's primary key on `event_id` drops any copy already stored. A message the parser refuses (a
poison message) is quarantined in `rejected_events` in the same transaction and acknowledged with the
rest, so it never blocks the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ingestion.batch import Batch, QuarantinedEvent
from ingestion.bus.engine import BusConsumer, ReceivedMessage
from ingestion.bus.grouping import events_of
from ingestion.copy_rows import CopyRows
from ingestion.events import ChangeRow, Rejection, parse_event
from ingestion.resilient_writer import ResilientWriter
from teston.core.errors import NotStarted
from teston.core.monitoring import Health, MetricsServer
from teston.core.wikis import WikiCatalog

log = logging.getLogger(__name__)

# A sink with no commit for this long while the bus reports a backlog is unhealthy.
STALE_AFTER = 120.0


class SinkMetrics:
    """The sink's counters and the bus lag gauges, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.pending = Gauge(
            "teston_bus_pending_messages",
            "Messages on the bus not yet delivered to a sink (as of the last fetch).",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "teston_bus_oldest_pending_age_seconds",
            "Age of the oldest message of the batch last fetched (0 when the bus is drained).",
            registry=registry,
        )
        self.received = Counter(
            "teston_sink_received_messages", "Messages fetched from the bus.", registry=registry
        )
        self.inserted = Counter(
            "teston_sink_inserted_events", "Rows newly stored in recent_changes.", registry=registry
        )
        self.duplicates = Counter(
            "teston_sink_duplicate_events",
            "Messages whose event was already stored (redeliveries, republished events).",
            registry=registry,
        )
        self.rejected = Counter(
            "teston_sink_rejected_events", "Messages quarantined in rejected_events.", registry=registry
        )


@dataclass(slots=True)
class SinkSummary:
    """What one sink run did."""

    received: int = 0  # events
    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    canary: int = 0
    rejected: int = 0
    batches: int = 0

    def describe(self) -> str:
        return (
            f"received {self.received} in {self.messages} messages, inserted {self.inserted}, "
            f"duplicates {self.duplicates}, "
            f"canary {self.canary}, rejected {self.rejected} in {self.batches} batches"
        )


def sink_batch(stream: str, messages: Sequence[ReceivedMessage], catalog: WikiCatalog) -> tuple[Batch, int]:
    """Parse fetched messages into one batch for the COPY writer; return it and the canaries dropped."""
    rows = CopyRows()
    quarantined: list[QuarantinedEvent] = []
    canary = 0
    for message in messages:
        payloads = events_of(message.payload, message.events)
        for index, payload in enumerate(payloads):
            result = parse_event(payload, catalog)
            if isinstance(result, ChangeRow):
                rows.append(result)
            elif isinstance(result, Rejection):
                source = message.source if len(payloads) == 1 else f"{message.source}/{index}"
                quarantined.append(QuarantinedEvent(source, result.reason, result.payload))
            else:
                canary += 1
    return Batch(stream=stream, rows=rows, quarantined=quarantined), canary


def messages_to_fetch(batch_events: int, events_per_message: float) -> int:
    """How many messages make about `batch_events` events, given how many a message has held lately."""
    return max(1, min(batch_events, round(batch_events / max(events_per_message, 1.0))))


def sink_lock_name() -> str:
    """The writer's stream name for this sink: sinks move no cursor, so each takes a lock of its own."""
    return f"bus-sink:{socket.gethostname()}:{os.getpid()}"


class BusSink:
    """A long-running component: fetch → parse → commit → acknowledge, until stopped."""

    name = "sink"

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, BusConsumer]],
        writer: ResilientWriter,
        catalog: WikiCatalog,
        *,
        batch_size: int = 2000,
        fetch_timeout: float = 1.0,
        idle_exit: float | None = None,
        metrics: SinkMetrics | None = None,
        serve_metrics: Callable[[Health], MetricsServer] | None = None,
        shutdown_grace: float = 10.0,
    ) -> None:
        self._connect = connect
        self._writer = writer
        self._catalog = catalog
        self._batch_size = batch_size
        self._fetch_timeout = fetch_timeout
        self._idle_exit = idle_exit
        self._metrics = metrics
        self._shutdown_grace = shutdown_grace
        self._stop = asyncio.Event()
        self._task: asyncio.Task[SinkSummary] | None = None
        self._consumer: BusConsumer | None = None
        self._lock_name = sink_lock_name()
        self.summary = SinkSummary()
        self._last_commit_at = time.monotonic()
        # Events per message in the last batch: a sink fetches about `batch_size` events, not messages.
        self._events_per_message = 1.0
        # The endpoint (built by the composition root) serves this sink's health.
        self._metrics_server = serve_metrics(self.health) if serve_metrics is not None else None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while running and, with a backlog on the bus, committing recently."""
        running = self._task is not None and not self._task.done()
        since_commit = time.monotonic() - self._last_commit_at
        pending = self._consumer.lag().pending if self._consumer is not None else 0
        healthy = running and (pending == 0 or since_commit < STALE_AFTER)
        return healthy, {
            "running": running,
            "seconds_since_commit": round(since_commit, 1),
            "pending": pending,
            **{k: getattr(self.summary, k) for k in ("received", "inserted", "rejected")},
        }

    async def start(self) -> None:
        if self._metrics_server is not None:
            await self._metrics_server.start()
        self._task = asyncio.create_task(self._run(), name="sink")

    async def wait(self) -> SinkSummary:
        if self._task is None:
            raise NotStarted("the sink was not started")
        return await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Finish the batch in hand (commit and acknowledge), then disconnect."""
        try:
            if self._task is not None and not self._task.done():
                self._stop.set()
                done, _ = await asyncio.wait({self._task}, timeout=self._shutdown_grace)
                if not done:
                    # PostgreSQL or the bus is unreachable: leave the batch unacknowledged, for redelivery.
                    self._writer.give_up()
                    self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        finally:
            await asyncio.to_thread(self._writer.close)
            if self._metrics_server is not None:
                await self._metrics_server.stop()

    async def _run(self) -> SinkSummary:
        consumer = self._consumer = await self._connect()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                wanted = messages_to_fetch(self._batch_size, self._events_per_message)
                messages = await consumer.fetch(wanted, self._fetch_timeout)
                self._observe_lag(consumer)
                if not messages:
                    if self._idle_exit is not None and time.monotonic() - idle_since >= self._idle_exit:
                        break
                    continue
                await self._store(consumer, messages)
                idle_since = time.monotonic()
        finally:
            await consumer.close()
        return self.summary

    async def _store(self, consumer: BusConsumer, messages: list[ReceivedMessage]) -> None:
        batch, canary = sink_batch(self._lock_name, messages, self._catalog)
        outcome = await asyncio.to_thread(self._writer.commit, batch)
        await consumer.acknowledge(messages)
        self._last_commit_at = time.monotonic()
        summary = self.summary
        summary.batches += 1
        events = sum(message.events for message in messages)
        self._events_per_message = events / len(messages)
        summary.messages += len(messages)
        summary.received += events
        summary.inserted += outcome.inserted
        summary.duplicates += outcome.duplicates
        summary.canary += canary
        summary.rejected += outcome.new_quarantine_records
        if self._metrics is not None:
            self._metrics.received.inc(len(messages))
            self._metrics.inserted.inc(outcome.inserted)
            self._metrics.duplicates.inc(outcome.duplicates)
            self._metrics.rejected.inc(outcome.new_quarantine_records)
        log.debug("sink batch: %d messages, %d new", len(messages), outcome.inserted)

    def _observe_lag(self, consumer: BusConsumer) -> None:
        if self._metrics is not None:
            lag = consumer.lag()
            self._metrics.pending.set(lag.pending)
            self._metrics.oldest_age.set(lag.oldest_age_seconds)
