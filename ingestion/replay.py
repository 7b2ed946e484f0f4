"""Loading a file of recorded events into PostgreSQL: the library call behind `teston ingest --source FILE`.

Analytics and bot tests load the captures with `ingest_path(url, path)`; it stops at the end of the file
and, thanks to the primary key and the file cursor, changes nothing when run twice. `replay_problem` says
what a replay's counts alone would hide: a damaged file, or a file with no events in it at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from ingestion.pipeline import IngestPipeline, IngestSummary, PipelineOptions
from ingestion.resilient_writer import ResilientWriter
from ingestion.service import connector
from ingestion.sources import is_sse_capture, open_file_source
from teston.wikis import WikiCatalog

# Replays favour throughput over the 2-second freshness of the live stream: fewer, larger transactions.
REPLAY_BATCH_SIZE = 10_000
ACCEPTED_FORMATS = (
    "JSON Lines (one event per line, any name but .sse) or a raw SSE capture (.sse), "
    "either optionally gzip-compressed (.gz)"
)


def replay_problem(path: Path, summary: IngestSummary) -> str | None:
    """One line on what went wrong with a replay read to its end, or None when nothing did.

    A damaged file (a gzip file cut short) comes first: its complete events are stored, the rest is not.
    A file with no event in it (empty, binary, another format) is a mistake, not a replay of nothing.
    """
    if summary.damage is not None:
        return (
            f"{path} is damaged and was read only up to the damage ({summary.damage}); the "
            f"{summary.events:,} records before it were stored or quarantined, the rest could not be read"
        )
    if summary.already_at_end or summary.ingested + summary.duplicates + summary.canary > 0:
        return None
    read_as = "an SSE capture" if is_sse_capture(path) else "JSON Lines"
    refused = (
        f"; its {summary.quarantined:,} records are not events and were quarantined in rejected_events"
        if summary.quarantined
        else ""
    )
    return f"no events found in {path} (read as {read_as}{refused}); replays accept {ACCEPTED_FORMATS}"


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
    writer = ResilientWriter(connector(url))
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
