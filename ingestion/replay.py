"""What `teston ingest --source FILE` needs beyond the pipeline: the replay batch size and the verdict.

A replay is the ordinary pipeline over a file source (`ingestion.sources`), built by the CLI. It stops at
the end of the file and, thanks to the primary key and the file cursor, changes nothing when run twice.
`replay_problem` says what a replay's counts alone would hide: a damaged file, or a file with no events in
it at all.
"""

from __future__ import annotations

from pathlib import Path

from ingestion.pipeline import IngestSummary
from ingestion.sources import is_sse_capture

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
