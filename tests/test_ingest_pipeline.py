"""The pipeline's batching against a committer slower than the stream: batches grow, within bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ingestion.batch import Batch, BatchOutcome, StreamCursor
from ingestion.copy_rows import CopyRows
from ingestion.pipeline import IngestPipeline, PipelineOptions
from ingestion.sources import Delivery
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"


class RecordedStream:
    """A source sending the capture in deliveries of 50 events as fast as they are taken."""

    def __init__(self, *, live: bool = True, per_delivery: int = 50) -> None:
        self.lines = [line for line in CAPTURE.read_bytes().splitlines() if line.strip()]
        self.live = live
        self.per_delivery = per_delivery

    stream = "https://stream.example/recentchange"
    total_bytes = None
    bytes_read = 0

    def origin(self, record: int) -> str:
        return self.stream

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        for start in range(0, len(self.lines), self.per_delivery):
            payloads: list[bytes | str] = list(self.lines[start : start + self.per_delivery])
            yield Delivery(payloads, f"[{start + len(payloads)}]")


class SlowCommitter:
    """Takes `seconds` per batch, as a busy database would, and keeps what it was given."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[Batch] = []

    def read_cursor(self, stream: str) -> StreamCursor | None:
        return None

    def commit(self, batch: Batch) -> BatchOutcome:
        time.sleep(self.seconds)
        self.batches.append(batch)
        assert isinstance(batch.rows, CopyRows)
        return BatchOutcome(
            inserted=len(batch.rows), duplicates=0, new_quarantine_records=0, seconds=self.seconds
        )

    def give_up(self) -> None:
        pass


async def test_a_busy_committer_gets_larger_batches_up_to_the_backlog_size() -> None:
    committer = SlowCommitter(0.2)
    options = PipelineOptions(batch_size=100, backlog_batch_size=400, flush_interval=10)
    summary = await IngestPipeline(RecordedStream(), committer, WikiCatalog.load(), options=options).run()

    assert summary.ingested == 1950
    sizes = [len(batch.rows) for batch in committer.batches]
    assert sum(sizes) == 1950
    assert sizes[0] == 100  # the committer was free: the batch went at batch_size
    assert max(sizes) == 400  # then the stream ran ahead, and batches grew to the bound, not beyond
    assert len(sizes) < 1950 / 100
    # Each batch carries the position of the last delivery it holds whole, so the cursor only moves
    # over committed events.
    positions = [batch.position for batch in committer.batches]
    assert positions[-1] == "[1950]"
    covered = 0
    for batch in committer.batches:
        covered += len(batch.rows)
        if batch.position is not None:
            assert int(batch.position.strip("[]")) <= covered


async def test_a_file_replay_keeps_to_the_batch_size() -> None:
    committer = SlowCommitter(0.05)
    source = RecordedStream(live=False)
    options = PipelineOptions(batch_size=100, backlog_batch_size=400)
    await IngestPipeline(source, committer, WikiCatalog.load(), options=options).run()
    assert [len(batch.rows) for batch in committer.batches] == [100] * 19 + [50]


class FailingCommitter(SlowCommitter):
    """Fails its second batch, as a database error no retry hides would."""

    def commit(self, batch: Batch) -> BatchOutcome:
        if self.batches:
            raise RuntimeError("the database refused the batch")
        return super().commit(batch)


@pytest.mark.parametrize("live", [True, False])
async def test_a_committer_failure_ends_the_run_with_its_error(live: bool) -> None:
    # The source ends long before the failure, with deliveries still queued: the batcher must not wait
    # (or spin) for a committer that has ended.
    committer = FailingCommitter(0.2)
    options = PipelineOptions(batch_size=100, backlog_batch_size=100, queue_size=64, flush_interval=10)
    pipeline = IngestPipeline(RecordedStream(live=live), committer, WikiCatalog.load(), options=options)
    with pytest.raises(RuntimeError, match="the database refused the batch"):
        await asyncio.wait_for(pipeline.run(), timeout=60)
    assert [len(batch.rows) for batch in committer.batches] == [100]
    assert pipeline.summary.ingested == 100
