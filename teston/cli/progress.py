"""A terminal progress bar for file replays: bytes read against the file's size, events/s and ETA."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ingestion.pipeline import IngestSummary
from ingestion.sources import Source


class ReplayProgress:
    """Shows how far a replay has read; `update` is the pipeline's `on_progress` callback."""

    def __init__(self, console: Console, source: Source) -> None:
        self._source = source
        self._started = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[events]:>9,} events"),
            TextColumn("{task.fields[rate]:>8,.0f} events/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        self._task = self._progress.add_task("ingesting", total=self._source.total_bytes, events=0, rate=0.0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, summary: IngestSummary) -> None:
        if self._task is None:
            return
        elapsed = time.perf_counter() - self._started
        self._progress.update(
            self._task,
            completed=self._source.bytes_read,
            events=summary.events,
            rate=summary.events / elapsed if elapsed > 0 else 0.0,
        )
