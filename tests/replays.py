"""Loading a capture into a test database through the real ingest path (parse → COPY → commit).

`ingest_path(url, path)` stops at the end of the file and, thanks to the primary key and the file
cursor, changes nothing when run twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from ingestion.pipeline import IngestPipeline, IngestSummary, PipelineOptions
from ingestion.replay import REPLAY_BATCH_SIZE
from ingestion.resilient_writer import ResilientWriter
from ingestion.sources import open_file_source
from teston.cli.wiring import writer_connector
from teston.core.wikis import WikiCatalog


async def ingest_file(
    url: str,
    path: Path,
    *,
    catalog: WikiCatalog | None = None,
    options: PipelineOptions | None = None,
    on_progress: Callable[[IngestSummary], None] | None = None,
) -> IngestSummary:
    """Ingest a `.jsonl[.gz]` or `.sse[.gz]` file into the database at `url`; return what happened."""
    source = open_file_source(path)
    writer = ResilientWriter(writer_connector(url))
    pipeline = IngestPipeline(
        source,
        writer,
        catalog or WikiCatalog.load(),
        options=options,
        on_progress=on_progress,
    )
    try:
        return await pipeline.run()
    finally:
        await asyncio.to_thread(writer.close)


def ingest_path(
    url: str,
    path: Path,
    *,
    catalog: WikiCatalog | None = None,
    batch_size: int = REPLAY_BATCH_SIZE,
) -> IngestSummary:
    """`ingest_file` for synchronous callers (not from inside a running event loop)."""
    options = PipelineOptions(batch_size=batch_size)
    return asyncio.run(ingest_file(url, path, catalog=catalog, options=options))
