"""Ingestion as a long-running component: run the pipeline on its source, serve metrics, stop cleanly.

`teston ingest` runs one of these until its source ends or a signal arrives; `teston up` runs it beside
the other components. Everything it uses (source, writer, catalog, metrics) is built by the composition
root (`teston/cli/wiring.py`) and passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ingestion.backoff import Failure, ReconnectPolicy
from ingestion.client import EventStreamClient, user_agent
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import BatchCommitter, IngestPipeline, IngestSummary, PipelineOptions
from ingestion.sources import Source, is_url, open_file_source
from teston.core.errors import NotStarted
from teston.core.monitoring import Health, MetricsServer
from teston.core.wikis import WikiCatalog

log = logging.getLogger(__name__)

# A live stream with no commit for this long is reported unhealthy (EventStreams carries dozens of
# events a second, and at least an hourly canary even on a quiet stream).
STALE_AFTER = 120.0


def open_source(
    spec: str,
    *,
    session: aiohttp.ClientSession | None,
    user_agent_product: str,
    since: datetime | None = None,
    policy: ReconnectPolicy | None = None,
    on_reconnect: Callable[[Failure], None] | None = None,
) -> Source:
    """The live stream for an http(s) URL, a file replay otherwise."""
    if is_url(spec):
        if session is None:
            raise ValueError("following a stream URL needs an HTTP session")
        return EventStreamClient(
            session,
            spec,
            user_agent=user_agent(user_agent_product),
            since=since,
            policy=policy,
            on_reconnect=on_reconnect,
        )
    path = Path(spec)
    if path.is_dir():
        raise IsADirectoryError(
            f"{spec} is a directory: give a stream URL, or a .jsonl[.gz] / .sse[.gz] file to replay"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {spec}")
    return open_file_source(path)


class ClosingCommitter(BatchCommitter, Protocol):
    """The COPY writer, or the bus publisher that stands in its place; closed when the service stops."""

    def close(self) -> None: ...


class IngestionService:
    """The ingestion pipeline plus its metrics endpoint, with async `start`/`stop`/`wait`."""

    name = "ingestion"

    def __init__(
        self,
        source: Source,
        writer: ClosingCommitter,
        catalog: WikiCatalog,
        *,
        options: PipelineOptions | None = None,
        metrics: IngestMetrics | None = None,
        serve_metrics: Callable[[Health], MetricsServer] | None = None,
        on_progress: Callable[[IngestSummary], None] | None = None,
    ) -> None:
        self.source = source
        self._writer = writer
        self.metrics = metrics
        self.pipeline = IngestPipeline(
            source, writer, catalog, options=options, metrics=metrics, on_progress=on_progress
        )
        # The endpoint (built by the composition root) serves this service's health.
        self._metrics_server = serve_metrics(self.health) if serve_metrics is not None else None
        self._task: asyncio.Task[IngestSummary] | None = None
        self._started_at = time.monotonic()

    @property
    def summary(self) -> IngestSummary:
        return self.pipeline.summary

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while running and, for the live stream, committing recently."""
        task = self._task
        running = task is not None and not task.done()
        last = self.pipeline.last_commit_at
        since_commit = time.monotonic() - (last if last is not None else self._started_at)
        healthy = running and (not self.source.live or since_commit < STALE_AFTER)
        details = {
            "stream": self.source.stream,
            "running": running,
            "seconds_since_commit": round(since_commit, 1),
            "ingested": self.summary.ingested,
            "last_event_time": self.summary.last_event_time,
        }
        return healthy, details

    async def claim_stream(self) -> None:
        """Take the stream's lock now (`StreamBusy` if another ingester holds it), before any port is bound.

        A second ingester of the stream is then told so, not that the metrics port the first one serves
        is taken.
        """
        try:
            await asyncio.to_thread(self._writer.read_cursor, self.source.stream)
        except BaseException:
            await asyncio.to_thread(self._writer.close)
            raise

    async def start(self) -> None:
        if self._metrics_server is not None:
            await self.claim_stream()
            try:
                await self._metrics_server.start()
            except BaseException:
                await asyncio.to_thread(self._writer.close)
                raise
        self._started_at = time.monotonic()
        self._task = asyncio.create_task(self.pipeline.run(), name="ingestion")

    async def wait(self) -> IngestSummary:
        """Return when the source has ended (a file replay) or the pipeline failed."""
        if self._task is None:
            raise NotStarted("the ingestion service was not started")
        return await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Flush and commit what was received, then release the database and the metrics port."""
        try:
            if self._task is not None and not self._task.done():
                self.pipeline.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        finally:
            await asyncio.to_thread(self._writer.close)
            if self._metrics_server is not None:
                await self._metrics_server.stop()
