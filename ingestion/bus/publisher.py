"""The ingester's side of the bus: a batch committer that publishes events instead of storing them.

It stands where the COPY writer stands in the direct path (`IngestPipeline` cannot tell them apart). Each
batch's valid events are published and acknowledged first; then one PostgreSQL transaction stores what
never goes on the bus (quarantined events, retention gaps) and moves the stream's cursor. So the cursor
never passes an event the bus has not acknowledged, and a restarted ingester resumes after the last
acknowledged batch; events published again after a crash are dropped by the bus's duplicate window
(JetStream) or by PostgreSQL's primary key.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ingestion.batch import Batch, BatchOutcome, QuarantinedEvent, StreamCursor
from ingestion.bus.engine import BusPublisher, OutgoingMessage
from ingestion.bus.grouping import group_events
from ingestion.copy_rows import CopyRows
from ingestion.resilient_writer import ResilientWriter

T = TypeVar("T")


def outgoing_messages(rows: CopyRows) -> list[OutgoingMessage]:
    """The rows the parser accepted (later copies of an event already dropped), as bus messages: each
    wiki's events of the batch together (`ingestion.bus.grouping`)."""
    return group_events(rows.routed())


class BusCommitter:
    """A `BatchCommitter` for the pipeline: events to the bus, quarantine and cursor to PostgreSQL.

    Its methods block (the pipeline runs them on a worker thread); the publisher's coroutines run on the
    event loop the committer was made on.
    """

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, BusPublisher]],
        writer: ResilientWriter,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connect = connect
        self._publisher: BusPublisher | None = None
        self._writer = writer
        self._loop = loop
        self._give_up = threading.Event()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _bus(self) -> BusPublisher:
        if self._publisher is None:
            self._publisher = self._run(self._connect())
        return self._publisher

    def read_cursor(self, stream: str) -> StreamCursor | None:
        cursor = self._writer.read_cursor(stream)
        self._bus()  # connect (and create the stream) before the first event is read
        return cursor

    def commit(self, batch: Batch) -> BatchOutcome:
        started = time.perf_counter()
        rows = batch.rows if isinstance(batch.rows, CopyRows) else CopyRows(batch.rows)
        messages = outgoing_messages(rows)
        duplicates = self._run(self._bus().publish(messages, self._give_up)) if messages else 0
        unencodable = [QuarantinedEvent(batch.stream, row.reason, row.payload) for row in rows.unencodable]
        quarantined = [*batch.quarantined, *unencodable]
        new_records = 0
        if quarantined or batch.gaps or batch.position is not None:
            rest = Batch(batch.stream, [], quarantined, batch.position, batch.last_event_time, batch.gaps)
            new_records = self._writer.commit(rest).new_quarantine_records
        published = sum(message.events for message in messages) - duplicates
        return BatchOutcome(
            inserted=published,
            duplicates=rows.received - published - len(unencodable),
            new_quarantine_records=new_records,
            seconds=time.perf_counter() - started,
            quarantined_rows=len(unencodable),
        )

    def give_up(self) -> None:
        self._give_up.set()
        self._writer.give_up()

    def close(self) -> None:
        try:
            if self._publisher is not None and not self._loop.is_closed():
                self._run(self._publisher.close())
        finally:
            self._publisher = None
            self._writer.close()
