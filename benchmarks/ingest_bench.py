"""Figures 1 and 2: ingest throughput against the server's own COPY and against the old bot's write path.

Per round, on one server and the same day's partition, each emptied and checkpointed before it runs:

A. ingest: a local SSE server sends the events at full speed over HTTP; the real pipeline
   (`ingestion.pipeline.IngestPipeline` with the live `EventStreamClient` and `ResilientWriter`) decodes,
   parses, COPYs and commits them. Timed from the start of the pipeline to its last commit.
B. limit: `COPY recent_changes_pYYYYMMDD FROM '<file>' (FORMAT BINARY)` run by the server itself, of the
   very rows A stored (exported once to a binary file), into the emptied partition, which keeps its
   primary key and wiki index, as A has to maintain them too.
C. old path: the old Go bot's write path replayed through psycopg, one autocommitted statement at a time
   as it ran: INSERT the event, DELETE all but the newest 100 rows of its language, UPSERT the
   language/day counter. It runs over the first `old_path_events` events (decoded with `json.loads`, as
   the old bot decoded each one) and its rate is extrapolated from that; it has its own small schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg import sql

from benchmarks.harness import Context, Figure, Server, ratio, timed
from benchmarks.local_stream import file_stream_process
from benchmarks.synthetic import EventFactory, sse_frames
from teston.core.partitions import day_bounds, partition_name

DAY = date(2025, 5, 3)
COPY_FILE = "ingest-rows.bin"
TARGET_LIMIT_SHARE = 0.8
TARGET_OLD_SPEEDUP = 30.0

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS recent_changes_old (
    id serial PRIMARY KEY,
    lang text NOT NULL,
    title text,
    "user" text,
    ts timestamptz NOT NULL,
    type text,
    bot boolean,
    comment text,
    server_url text
);
CREATE INDEX IF NOT EXISTS recent_changes_old_lang_ts ON recent_changes_old (lang, ts DESC);
CREATE TABLE IF NOT EXISTS recent_change_counts_old (
    lang text NOT NULL,
    day date NOT NULL,
    changes bigint NOT NULL,
    PRIMARY KEY (lang, day)
);
"""
OLD_INSERT = (
    'INSERT INTO recent_changes_old (lang, title, "user", ts, type, bot, comment, server_url)'
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
OLD_TRIM = (
    "DELETE FROM recent_changes_old WHERE lang = %s AND id NOT IN"
    " (SELECT id FROM recent_changes_old WHERE lang = %s ORDER BY ts DESC LIMIT 100)"
)
OLD_COUNT = (
    "INSERT INTO recent_change_counts_old (lang, day, changes) VALUES (%s, %s, 1)"
    " ON CONFLICT (lang, day) DO UPDATE SET changes = recent_change_counts_old.changes + 1"
)


class FirstEvents:
    """The first `limit` payloads of a live source, then the end: a live stream never ends by itself."""

    def __init__(self, source: Any, limit: int) -> None:
        self._source = source
        self._limit = limit

    @property
    def stream(self) -> str:
        return str(self._source.stream)

    @property
    def live(self) -> bool:
        return True

    @property
    def total_bytes(self) -> int | None:
        return None

    @property
    def bytes_read(self) -> int:
        return int(self._source.bytes_read)

    def origin(self, record: int) -> str:
        return str(self._source.origin(record))

    async def deliveries(self, position: str | None) -> AsyncIterator[Any]:
        from ingestion.sources import Delivery

        remaining = self._limit
        stream = self._source.deliveries(position)
        try:
            async for delivery in stream:
                if len(delivery.payloads) >= remaining:
                    yield Delivery(delivery.payloads[:remaining], delivery.position, delivery.first_record)
                    return
                remaining -= len(delivery.payloads)
                yield delivery
        finally:
            await stream.aclose()


async def ingest_from_stream(url: str, stream_url: str, events: int) -> int:
    """Run the real ingest pipeline on the live-stream client until `events` events are committed."""
    from ingestion.client import EventStreamClient
    from ingestion.pipeline import IngestPipeline, PipelineOptions
    from ingestion.resilient_writer import ResilientWriter
    from teston.cli.wiring import writer_connector
    from teston.core.runtime import prompt_thread_switches
    from teston.core.wikis import WikiCatalog

    catalog = WikiCatalog.load()
    async with aiohttp.ClientSession() as session:
        client = EventStreamClient(session, stream_url, user_agent="TestON-benchmark/0 (local)")
        writer = ResilientWriter(writer_connector(url))
        pipeline = IngestPipeline(FirstEvents(client, events), writer, catalog, options=PipelineOptions())
        try:
            with prompt_thread_switches():  # as `teston ingest` runs it
                summary = await pipeline.run()
        finally:
            await asyncio.to_thread(writer.close)
    return int(summary.ingested)


def _reset_ingest(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(partition_name(DAY))))
        conn.execute("TRUNCATE stream_cursors, day_arrivals")
        conn.execute("CHECKPOINT")


def _count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition_name(DAY)))
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def export_binary(url: str, path: Path) -> None:
    """Write the day's rows, every column, to a binary COPY file the server itself can read back."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COPY (SELECT * FROM {}) TO {} (FORMAT BINARY)").format(
                sql.Identifier(partition_name(DAY)), sql.Literal(str(path))
            )
        )


def copy_from_file(url: str, path: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COPY {} FROM {} (FORMAT BINARY)").format(
                sql.Identifier(partition_name(DAY)), sql.Literal(str(path))
            )
        )


def _reset_old(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute("TRUNCATE recent_changes_old, recent_change_counts_old RESTART IDENTITY")
        conn.execute("CHECKPOINT")


def replay_old_path(url: str, lines: Sequence[str]) -> None:
    """The old bot's write path: per event, three autocommitted statements."""
    with psycopg.connect(url, autocommit=True) as conn:
        for line in lines:
            event = json.loads(line)
            server_name = event.get("server_name") or ""
            lang = server_name.split(".", 1)[0]
            moment = datetime.fromtimestamp(event["timestamp"], UTC)
            conn.execute(
                OLD_INSERT,
                (
                    lang,
                    event.get("title"),
                    event.get("user"),
                    moment,
                    event.get("type"),
                    event.get("bot"),
                    event.get("comment"),
                    event.get("server_url"),
                ),
            )
            conn.execute(OLD_TRIM, (lang, lang))
            conn.execute(OLD_COUNT, (lang, moment.date()))


def _ensure_partition(url: str) -> None:
    from teston.core.partitions import ensure_partitions

    with psycopg.connect(url) as conn:
        ensure_partitions(conn, [DAY])
        conn.commit()


def run(context: Context) -> list[Figure]:
    size = context.size
    start, end = day_bounds(DAY)
    factory = EventFactory(context.profile, seed=context.seed)
    lines = list(factory.events(size.ingest_events, start, end))
    sse_path = context.workdir / "ingest.sse"
    with sse_path.open("wb") as out:
        for frame in sse_frames(lines):
            out.write(frame)
    old_lines = lines[: size.old_path_events]
    del lines

    with context.postgres() as server, file_stream_process(sse_path) as stream_url:
        return _measure(context, server, stream_url, old_lines)


def _measure(context: Context, server: Server, stream_url: str, old_lines: Sequence[str]) -> list[Figure]:
    size = context.size
    url = server.url
    copy_file = server.scratch / COPY_FILE
    _ensure_partition(url)
    stored: list[int] = []

    def ingest() -> None:
        stored.append(asyncio.run(ingest_from_stream(url, stream_url, size.ingest_events)))

    def limit() -> None:
        copy_from_file(url, copy_file)

    def old_path() -> None:
        replay_old_path(url, old_lines)

    # The binary file holds the rows the pipeline stores: produce it once, before the timed rounds.
    context.log(f"ingest: warm-up run of {size.ingest_events} events to make the binary COPY file")
    _reset_ingest(url)
    ingest()
    export_binary(url, copy_file)
    file_bytes = copy_file.stat().st_size

    ingest_seconds: list[float] = []
    limit_seconds: list[float] = []
    old_seconds: list[float] = []
    for round_no in range(size.ingest_rounds):
        _reset_ingest(url)
        ingest_seconds.append(timed(ingest))
        rows = _count_rows(url)
        if rows != size.ingest_events:
            raise RuntimeError(f"ingest stored {rows} rows, expected {size.ingest_events}")
        _reset_ingest(url)
        limit_seconds.append(timed(limit))
        _reset_old(url)
        old_seconds.append(timed(old_path))
        context.log(
            f"ingest round {round_no + 1}: pipeline {ingest_seconds[-1]:.2f}s, "
            f"server COPY {limit_seconds[-1]:.2f}s, old path {old_seconds[-1]:.2f}s "
            f"for {len(old_lines)} events"
        )

    events = size.ingest_events
    ingest_rates = [events / s for s in ingest_seconds]
    limit_rates = [events / s for s in limit_seconds]
    old_rates = [len(old_lines) / s for s in old_seconds]
    share = ratio([a / b for a, b in zip(ingest_rates, limit_rates, strict=True)])
    speedup = ratio([a / b for a, b in zip(ingest_rates, old_rates, strict=True)])
    median_ingest = sorted(ingest_rates)[len(ingest_rates) // 2]
    median_limit = sorted(limit_rates)[len(limit_rates) // 2]
    median_old = sorted(old_rates)[len(old_rates) // 2]
    return [
        Figure(
            number=1,
            what=f"ingest: local SSE at full speed → parse → COPY → commit, {events:,} events",
            result=f"{median_ingest:,.0f} events/s",
            baseline=f"server-side binary COPY FROM file: {median_limit:,.0f} rows/s",
            ratio=str(share),
            target=f"≥ {TARGET_LIMIT_SHARE} × limit",
            met=share.median >= TARGET_LIMIT_SHARE,
            values={
                "ingest_events_per_s": median_ingest,
                "copy_rows_per_s": median_limit,
                "ratio": share.median,
                "ratio_low": share.low,
                "ratio_high": share.high,
                "copy_file_bytes": float(file_bytes),
            },
            notes=f"{size.ingest_rounds} rounds A/B/C; COPY file {file_bytes / events:.0f} B/row.",
        ),
        Figure(
            number=2,
            what="ingest vs the old bot's write path (INSERT + DELETE-keep-100 + counter UPSERT per event)",
            result=f"{median_ingest:,.0f} events/s",
            baseline=f"old path: {median_old:,.0f} events/s (over {len(old_lines):,} events, extrapolated)",
            ratio=str(speedup),
            target=f"≥ {TARGET_OLD_SPEEDUP:.0f} ×",
            met=speedup.median >= TARGET_OLD_SPEEDUP,
            values={
                "old_events_per_s": median_old,
                "ratio": speedup.median,
                "ratio_low": speedup.low,
                "ratio_high": speedup.high,
            },
        ),
    ]
