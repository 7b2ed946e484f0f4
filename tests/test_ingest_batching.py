"""When a live stream's events are committed, on PostgreSQL: at once while the writer is idle, in batches
under a backlog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import psycopg

from ingestion.batch import Batch, BatchOutcome, StreamCursor
from ingestion.pipeline import IngestPipeline, PipelineOptions
from ingestion.sources import Delivery
from ingestion.writer import BatchWriter
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"
STREAM = "https://stream.example/recentchange"
# Long enough that no batch in these tests could be due because of its age.
AN_HOUR = 3600.0


def capture_lines() -> list[bytes]:
    return [line for line in CAPTURE.read_bytes().splitlines() if line.strip()]


def event_id(line: bytes) -> str:
    return str(json.loads(line)["meta"]["id"])


class RecordingWriter:
    """The real writer, noting the size of every batch it commits."""

    def __init__(self, db_url: str) -> None:
        self._writer = BatchWriter(psycopg.connect(db_url))
        self.sizes: list[int] = []

    def read_cursor(self, stream: str) -> StreamCursor | None:
        return self._writer.read_cursor(stream)

    def commit(self, batch: Batch) -> BatchOutcome:
        outcome = self._writer.commit(batch)
        self.sizes.append(len(batch.rows))
        return outcome

    def give_up(self) -> None:
        pass

    def close(self) -> None:
        self._writer.close()


def visible(db_url: str, ids: list[str]) -> int:
    """How many of these events a reader (as `!recent` reads) sees stored."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM recent_changes WHERE event_id = ANY(%s::uuid[])", (ids,)
        ).fetchone()
    return int(row[0]) if row else 0


class QuietStream:
    """A live stream that sends one event, then nothing until that event is visible, then one more."""

    def __init__(self, db_url: str) -> None:
        self.lines = capture_lines()[:2]
        self._db_url = db_url
        self.first_seen_while_second_unsent = False

    stream = STREAM
    live = True
    total_bytes = None
    bytes_read = 0

    def origin(self, record: int) -> str:
        return self.stream

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        yield Delivery([self.lines[0]], "[1]")
        while not await asyncio.to_thread(visible, self._db_url, [event_id(self.lines[0])]):
            await asyncio.sleep(0.01)
        self.first_seen_while_second_unsent = True
        yield Delivery([self.lines[1]], "[2]")


async def test_a_lone_event_is_committed_at_once_without_waiting_for_the_flush_interval(db_url: str) -> None:
    source = QuietStream(db_url)
    writer = RecordingWriter(db_url)
    options = PipelineOptions(batch_size=2000, flush_interval=AN_HOUR)
    try:
        # With batches due only by size or age, the first event would wait an hour and this would hang.
        summary = await asyncio.wait_for(
            IngestPipeline(source, writer, WikiCatalog.load(), options=options).run(), timeout=120
        )
    finally:
        writer.close()

    assert source.first_seen_while_second_unsent
    assert writer.sizes == [1, 1]  # each event its own commit, the writer being idle
    assert summary.ingested == 2
    assert visible(db_url, [event_id(line) for line in source.lines]) == 2
    with psycopg.connect(db_url) as conn:
        cursor = conn.execute(
            "SELECT last_event_id FROM stream_cursors WHERE stream = %s", (STREAM,)
        ).fetchone()
    assert cursor == ("[2]",)


class BackloggedStream:
    """A live stream with the whole capture already waiting, in deliveries of 50 events."""

    def __init__(self) -> None:
        self.lines = capture_lines()

    stream = STREAM
    live = True
    total_bytes = None
    bytes_read = 0

    def origin(self, record: int) -> str:
        return self.stream

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        for start in range(0, len(self.lines), 50):
            payloads: list[bytes | str] = list(self.lines[start : start + 50])
            yield Delivery(payloads, f"[{start + len(payloads)}]")


async def test_under_a_backlog_events_are_committed_in_batches(db_url: str) -> None:
    source = BackloggedStream()
    writer = RecordingWriter(db_url)
    options = PipelineOptions(batch_size=500, backlog_batch_size=1000, flush_interval=AN_HOUR)
    try:
        summary = await asyncio.wait_for(
            IngestPipeline(source, writer, WikiCatalog.load(), options=options).run(), timeout=120
        )
    finally:
        writer.close()

    deliveries = -(-len(source.lines) // 50)
    # The deliveries already waiting joined the first batch up to the batch size, and the events that
    # arrived while a batch was being committed went together into the next: a few commits, not one per
    # delivery (39) or per event.
    assert writer.sizes[0] == 500
    assert sum(writer.sizes) == len(source.lines)
    assert max(writer.sizes) <= 1000
    assert len(writer.sizes) <= deliveries // 3
    assert summary.ingested + summary.duplicates + summary.canary + summary.quarantined == len(source.lines)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
        cursor = conn.execute(
            "SELECT last_event_id FROM stream_cursors WHERE stream = %s", (STREAM,)
        ).fetchone()
    assert stored == (summary.ingested,)
    assert cursor == (f"[{len(source.lines)}]",)
