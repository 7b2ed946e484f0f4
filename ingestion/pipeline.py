"""The ingestion loop: source → parse → batch → commit, with backpressure and clean stops.

A live stream's events are committed at once while the writer is idle and batched only under a backlog.

Three stages run concurrently: the source fills a bounded queue of deliveries (when it is full the source
stops reading, and TCP flow control slows the server), the batcher parses events and encodes their rows
for COPY as it goes (`ingestion.batching`), and the committer writes one batch at a time on a worker
thread while the next batch is being parsed. The worker thread has little Python to run (it sends bytes
and waits for PostgreSQL), so it seldom waits for the interpreter lock the parser holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ingestion.batch import Batch, BatchOutcome, StreamCursor
from ingestion.batching import BatchBuilder, PendingBatch, SealedBatch
from ingestion.gaps import DEFAULT_TOLERANCE, IngestGap
from ingestion.metrics import IngestMetrics
from ingestion.sources import Delivery, Source
from teston.core.errors import IngestionError
from teston.core.wikis import WikiCatalog

log = logging.getLogger(__name__)


class CommitterStopped(IngestionError):
    """The batch committer ended without an error while batches still waited for it."""


class BatchCommitter(Protocol):
    """What the pipeline needs from the database side (blocking calls, run on a worker thread)."""

    def read_cursor(self, stream: str) -> StreamCursor | None: ...

    def commit(self, batch: Batch) -> BatchOutcome: ...

    def give_up(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    # A live stream's batch goes to an idle committer as soon as no delivery waits to be parsed, so a
    # lone event is committed at once; events already waiting join it up to this many first.
    batch_size: int = 2000
    # While the database is still committing the previous batch, a live stream's next batch keeps growing
    # up to this many events instead of waiting, full, for its turn: small live batches are for freshness,
    # which a backlog (a catch-up after a restart, a burst) has already lost, and every batch costs a
    # commit (a WAL flush) and a few round trips. File replays keep to `batch_size`.
    backlog_batch_size: int = 10_000
    # An event waits at most this long before its batch is due (a file replay's batch that does not fill).
    flush_interval: float = 1.0
    # Deliveries (chunks of events), not events: a file delivery holds about a megabyte of lines.
    queue_size: int = 16
    gap_tolerance: timedelta = DEFAULT_TOLERANCE
    # After a stop, how long to keep retrying a batch against an unreachable database before giving up.
    shutdown_grace: float = 10.0
    # Where a cursor-less live stream starts (`?since=`); also the reference for a retention gap.
    since: datetime | None = None


@dataclass(slots=True)
class IngestSummary:
    """What one run did: rows stored, duplicates dropped, canaries skipped, events quarantined."""

    ingested: int = 0
    duplicates: int = 0
    canary: int = 0
    # Events sent to quarantine: refused by the parser, or rows the database refused (each counted once
    # per run, whether or not `rejected_events` already held the same record).
    quarantined: int = 0
    batches: int = 0
    gaps: list[IngestGap] = field(default_factory=list)
    seconds: float = 0.0
    last_event_time: datetime | None = None
    # A replay resumed from its stored cursor and read to the end found nothing after it: the file had
    # already been ingested to its end (stopping early, or finding more records, leaves this False).
    already_at_end: bool = False
    # Why a damaged file could not be read to its end (see `Delivery.damage`); None when it could.
    damage: str | None = None

    @property
    def events(self) -> int:
        return self.ingested + self.duplicates + self.canary + self.quarantined

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        counts = (
            f"ingested {self.ingested}, duplicates {self.duplicates}, canary {self.canary}, "
            f"rejected {self.quarantined} in {self.seconds:.1f} s ({self.events_per_second:.0f} events/s)"
        )
        if self.already_at_end:
            return f"the file was already ingested to its end, nothing new stored: {counts}"
        return counts


_END = object()
# How long the batcher steps aside after handing a batch over while deliveries wait (see `_hand_over`).
COMMIT_START_PAUSE = 0.003


async def _unless_committer_ended(
    waiters: set[asyncio.Future[Any]], committer: asyncio.Task[None], within: float | None = None
) -> set[asyncio.Future[Any]]:
    """Wait for the first of `waiters` (or `within` seconds); if the committer has failed, raise its error.

    The committer only ends on `_END` or an error, so a batcher waiting for it would otherwise wait forever.
    A committer that ended well (it took `_END`) is no failure when a waiter is done too.
    """
    done, _ = await asyncio.wait({*waiters, committer}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if committer in done and (
        committer.cancelled() or committer.exception() is not None or not done & waiters
    ):
        for waiter in waiters:
            waiter.cancel()
        committer.result()  # raises the committer's error
        raise CommitterStopped("batch committer stopped unexpectedly")
    return done


class IngestPipeline:
    """One run of ingestion from a source into PostgreSQL, until the source ends or `stop()` is called."""

    def __init__(
        self,
        source: Source,
        committer: BatchCommitter,
        catalog: WikiCatalog,
        *,
        options: PipelineOptions | None = None,
        metrics: IngestMetrics | None = None,
        on_progress: Callable[[IngestSummary], None] | None = None,
    ) -> None:
        self.source = source
        self._committer = committer
        self._catalog = catalog
        self.options = options or PipelineOptions()
        self._metrics = metrics
        self._on_progress = on_progress
        self.summary = IngestSummary()
        self._stop = asyncio.Event()
        self._committer_idle = asyncio.Event()  # the committer waits for a batch
        self._deliveries: asyncio.Queue[Delivery] | None = None
        self.last_commit_at: float | None = None

    def stop(self) -> None:
        """Ask the run to finish: stop reading, commit what was received, return."""
        self._stop.set()

    async def run(self) -> IngestSummary:
        started = time.perf_counter()
        grace = asyncio.create_task(self._give_up_after_grace())
        try:
            return await self._run()
        finally:
            grace.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await grace
            self.summary.seconds = time.perf_counter() - started

    async def _run(self) -> IngestSummary:
        cursor = await asyncio.to_thread(self._committer.read_cursor, self.source.stream)
        if self._stop.is_set():
            return self.summary
        if cursor is not None:
            log.info("resuming %s from %s", self.source.stream, cursor.position)
        self._builder = BatchBuilder(
            self.source,
            self._catalog,
            gap_tolerance=self.options.gap_tolerance,
            newest=cursor.last_event_time if cursor is not None else self.options.since,
            count_kinds=self._metrics is not None,
        )
        deliveries: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=self.options.queue_size)
        batches: asyncio.Queue[SealedBatch | object] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read(cursor.position if cursor else None, deliveries))
        committer = asyncio.create_task(self._commit_all(batches))
        stopper = asyncio.create_task(self._stop_reader_on_request(reader))
        try:
            await self._batch_all(deliveries, batches, reader, committer)
            await _unless_committer_ended({asyncio.ensure_future(batches.put(_END))}, committer)
            await committer
        finally:
            for task in (reader, stopper, committer):
                task.cancel()
            for task in (reader, stopper, committer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        failure = None if reader.cancelled() else reader.exception()
        if failure is not None:
            raise failure
        if (
            cursor is not None
            and not self.source.live
            and not reader.cancelled()
            and self.summary.batches == 0
            and self.summary.damage is None
        ):
            self.summary.already_at_end = True
        return self.summary

    async def _stop_reader_on_request(self, reader: asyncio.Task[None]) -> None:
        await self._stop.wait()
        reader.cancel()

    async def _give_up_after_grace(self) -> None:
        # After a stop, the batch in flight keeps its chance to commit; past the grace period an
        # unreachable database ends the run with the cursor where it was: nothing is lost, only left for
        # the next run.
        await self._stop.wait()
        await asyncio.sleep(self.options.shutdown_grace)
        self._committer.give_up()

    async def _read(self, position: str | None, queue: asyncio.Queue[Delivery]) -> None:
        async for delivery in self.source.deliveries(position):
            await queue.put(delivery)

    async def _batch_all(
        self,
        deliveries: asyncio.Queue[Delivery],
        batches: asyncio.Queue[SealedBatch | object],
        reader: asyncio.Task[None],
        committer: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        options = self.options
        largest = (
            max(options.batch_size, options.backlog_batch_size) if self.source.live else options.batch_size
        )
        live = self.source.live
        idle = self._committer_idle
        idle.set()
        self._deliveries = deliveries
        pending = PendingBatch()
        while True:
            # A batch is due when it holds batch_size events or its oldest has waited flush_interval, and a
            # live stream's batch also as soon as no delivery waits to be parsed: an idle writer commits a
            # lone event at once, and events are batched only when they arrive faster than commits end
            # (a backlog). A due batch goes as soon as the committer is free, and until then keeps growing
            # (up to `largest`).
            due_at: float | None = None
            due = False
            if not pending.empty:
                due_at = pending.started + options.flush_interval
                due = (
                    pending.size >= options.batch_size
                    or (live and deliveries.empty())
                    or loop.time() >= due_at
                )
            if due and idle.is_set():
                await self._hand_over(pending, batches)
                pending = PendingBatch()
                continue
            if not deliveries.empty() and not committer.done():
                # The usual case when the stream runs ahead: take what is there without a wait.
                pending = await self._take(deliveries.get_nowait(), pending, batches, committer, largest)
                continue
            getter = asyncio.ensure_future(deliveries.get())
            waiters: set[asyncio.Future[Any]] = {getter, reader}
            if due:  # and the committer busy: wait for either more events or the committer
                committer_free = asyncio.ensure_future(idle.wait())
                waiters.add(committer_free)
                timeout = None
            else:
                timeout = None if due_at is None else max(due_at - loop.time(), 0)
            done = await _unless_committer_ended(waiters, committer, timeout)
            if due:
                committer_free.cancel()
            if getter in done:
                pending = await self._take(getter.result(), pending, batches, committer, largest)
                continue
            getter.cancel()
            if reader.done() and deliveries.empty():
                break
        if not pending.empty:
            await self._hand_over_when_idle(pending, batches, committer)

    async def _take(
        self,
        delivery: Delivery,
        pending: PendingBatch,
        batches: asyncio.Queue[SealedBatch | object],
        committer: asyncio.Task[None],
        largest: int,
    ) -> PendingBatch:
        """Parse a delivery into the pending batch; return the batch pending after it."""
        now = asyncio.get_running_loop().time
        if delivery.damage is not None:
            self.summary.damage = delivery.damage
        if pending.empty:
            pending.started = now()
        # A delivery larger than a batch is split; only the batch holding its end carries its position,
        # so the cursor never covers events that are not yet committed.
        start, count = 0, len(delivery.payloads)
        while start < count:
            end = min(start + largest - pending.size, count)
            self._builder.parse_into(pending, delivery, start, end)
            start = end
            if pending.size >= largest:
                await self._hand_over_when_idle(pending, batches, committer)
                pending = PendingBatch(started=now())
        if count == 0 and delivery.position is not None:
            pending.position = delivery.position
        return pending

    async def _hand_over(self, pending: PendingBatch, batches: asyncio.Queue[SealedBatch | object]) -> None:
        self._committer_idle.clear()
        batches.put_nowait(self._seal(pending))
        # Let the committer task start the commit now: the batcher, with deliveries queued, would
        # otherwise parse on without yielding (up to 16 deliveries; BENCHMARKS.md has the cost) while
        # PostgreSQL waits for the batch.
        await asyncio.sleep(0)
        if self._deliveries is not None and not self._deliveries.empty():
            # The batcher would parse on at once, holding the interpreter lock, and the worker thread would
            # wait up to the switch interval (5 ms) for it after each of the commit's first two round trips
            # (BEGIN with the arrival lock, the COPY's start) while PostgreSQL idles: let it through them.
            await asyncio.sleep(COMMIT_START_PAUSE)

    async def _hand_over_when_idle(
        self,
        pending: PendingBatch,
        batches: asyncio.Queue[SealedBatch | object],
        committer: asyncio.Task[None],
    ) -> None:
        """Wait, parsing nothing more, until the committer is free (or has failed); then hand it the batch."""
        await _unless_committer_ended({asyncio.ensure_future(self._committer_idle.wait())}, committer)
        await self._hand_over(pending, batches)

    def _seal(self, pending: PendingBatch) -> SealedBatch:
        sealed = self._builder.seal(pending)
        self.summary.canary += sealed.canary
        if self._metrics is not None and sealed.canary:
            self._metrics.canary.inc(sealed.canary)
        return sealed

    async def _commit_all(self, batches: asyncio.Queue[SealedBatch | object]) -> None:
        while True:
            sealed = await batches.get()
            if not isinstance(sealed, SealedBatch):  # `_END`, the only other item
                return
            outcome = await asyncio.to_thread(self._committer.commit, sealed.batch)
            self._account(sealed, outcome)
            self._committer_idle.set()

    def _account(self, sealed: SealedBatch, outcome: BatchOutcome) -> None:
        batch = sealed.batch
        summary = self.summary
        summary.batches += 1
        summary.ingested += outcome.inserted
        summary.duplicates += outcome.duplicates
        quarantined = len(batch.quarantined) + outcome.quarantined_rows
        summary.quarantined += quarantined
        summary.gaps.extend(batch.gaps)
        if batch.last_event_time is not None and (
            summary.last_event_time is None or batch.last_event_time > summary.last_event_time
        ):
            summary.last_event_time = batch.last_event_time
        self.last_commit_at = time.monotonic()
        metrics = self._metrics
        if metrics is not None:
            metrics.commit_seconds.observe(outcome.seconds)
            metrics.inserted.inc(outcome.inserted)
            metrics.duplicates.inc(outcome.duplicates)
            metrics.rejected.inc(quarantined)
            metrics.gaps.inc(len(batch.gaps))
            metrics.count_events(sealed.kinds.elements())
            if self.source.live:
                metrics.observe_lags(datetime.now(UTC), sealed.event_times)
            if summary.last_event_time is not None:
                metrics.last_event_time.set(summary.last_event_time.timestamp())
        log.debug(
            "batch committed: %d events, %d new, %d duplicates, %d quarantined in %.3fs",
            outcome.inserted + outcome.duplicates + quarantined,
            outcome.inserted,
            outcome.duplicates,
            quarantined,
            outcome.seconds,
        )
        if self._on_progress is not None:
            self._on_progress(summary)
