"""Writing a day's Parquet export: streamed from one PostgreSQL snapshot, verified, replaced atomically.

Files go where `layout` says. Each is written to a temporary name beside its target, fsynced, verified
and then renamed, so a reader sees the old file or the new one, never half of one; a day's typed and
raw files are replaced together or not at all (`day_files.replaced_together`), and recorded in
`day_exports` (`bookkeeping.record_export`) before the old files are let go. The same rows always give
the same bytes.

An export never loses rows. Once retention has dropped a day's raw partition the export is the only
copy of those rows; if late events re-create the partition, the day is exported again as the
exported rows plus the PostgreSQL rows they lack (`merge_day`), not from PostgreSQL alone.

Transactions: reads of PostgreSQL run in their own transactions (the day's rows in one REPEATABLE
READ snapshot, `day_rows.day_transaction`); callers never commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analytics import bookkeeping, day_rows, layout
from analytics.bookkeeping import DayExport
from analytics.day_files import (
    DayFileWriter,
    ExportError,
    Replace,
    day_writers,
    parquet_rows,
    replaced_together,
)
from analytics.day_rows import RAW_SCHEMA, TYPED_SCHEMA
from teston.core.partitions import day_bounds

log = logging.getLogger(__name__)

# Rows read at a time from an existing export while merging late rows into it.
_MERGE_BATCH_ROWS = 64 * 1024
# The order of every export's rows; `event_id` is the UUID as lowercase text, which sorts as
# PostgreSQL sorts the uuid (byte by byte), so Arrow and PostgreSQL agree on it.
_ROW_ORDER = [("event_time", "ascending"), ("event_id", "ascending")]


@dataclass(frozen=True)
class WrittenDay:
    """A day written to Parquet from one PostgreSQL snapshot, with its counts checked."""

    day: date
    path: Path
    raw_path: Path | None
    rows: int
    max_received_at: datetime | None


# Work done while a day's new files are in place and the old ones still kept (recording the export):
# if it fails, the old files are put back.
Record = Callable[[WrittenDay], None]


def write_day(
    conn: psycopg.Connection,
    day: date,
    path: Path,
    *,
    raw_path: Path | None = None,
    min_rows: int = 0,
    record: Record | None = None,
    replace: Replace = os.replace,
) -> WrittenDay:
    """Stream a day out of PostgreSQL into `path` (and the raw JSON into `raw_path`), atomically.

    The files hold exactly the rows PostgreSQL sent (its COPY command's own count), or nothing is replaced.
    Fewer than `min_rows` rows is refused: it would replace an export with less than it holds.
    """
    with day_writers(path, raw_path) as (typed, raw):
        with day_rows.day_transaction(conn):
            rows = day_rows.DayStream(conn, day, include_raw=raw is not None)
            for typed_batch, raw_batch in rows:
                typed.write(typed_batch)
                if raw is not None and raw_batch is not None:
                    raw.write(raw_batch)
        snapshot = rows.snapshot
        if snapshot.rows < min_rows:
            raise ExportError(
                f"{day}: PostgreSQL holds {snapshot.rows} rows but the export already has {min_rows};"
                " not exported again"
            )
        written = WrittenDay(
            day=day,
            path=path,
            raw_path=raw_path,
            rows=snapshot.rows,
            max_received_at=snapshot.max_received_at,
        )
        what = f"{day}: PostgreSQL sent {snapshot.rows} rows"
        with replaced_together((typed, raw), snapshot.rows, what, replace=replace):
            if record is not None:
                record(written)
    return written


def _absent_from(path: Path, event_ids: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """For each of `event_ids`, whether the Parquet file at `path` lacks it (an anti-join on event_id)."""
    found = pa.array([False] * len(event_ids), type=pa.bool_())
    if len(event_ids):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_MERGE_BATCH_ROWS, columns=["event_id"]):
            found = pc.or_(found, pc.is_in(event_ids, value_set=batch.column(0)))
    return pc.invert(found)


def _merge_sorted(writer: DayFileWriter, path: Path, schema: pa.Schema, late: pa.Table) -> None:
    """Write the rows of the file at `path` and the `late` rows, both in row order, as one ordered run."""
    pending = late
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_MERGE_BATCH_ROWS):
        chunk = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
        if pending.num_rows and chunk.num_rows:
            # The late rows that sort before this chunk's last row belong in it.
            last_time, last_id = chunk["event_time"][-1], chunk["event_id"][-1]
            before = pc.or_(
                pc.less(pending["event_time"], last_time),
                pc.and_(pc.equal(pending["event_time"], last_time), pc.less(pending["event_id"], last_id)),
            )
            taken = int(pc.sum(before).as_py() or 0)
            if taken:
                chunk = pa.concat_tables([chunk, pending.slice(0, taken)]).sort_by(_ROW_ORDER)
                pending = pending.slice(taken)
        for rows in chunk.to_batches():
            writer.write(rows)
    for rows in pending.to_batches():
        writer.write(rows)


def _postgres_day(
    conn: psycopg.Connection, day: date, *, include_raw: bool
) -> tuple[pa.Table, pa.Table | None, day_rows.DaySnapshot]:
    """Every row PostgreSQL holds for a day, in row order, from one snapshot (for merging: few rows)."""
    typed_batches: list[pa.RecordBatch] = []
    raw_batches: list[pa.RecordBatch] = []
    with day_rows.day_transaction(conn):
        for typed_batch, raw_batch in day_rows.stream_day(conn, day, include_raw=include_raw):
            typed_batches.append(typed_batch)
            if raw_batch is not None:
                raw_batches.append(raw_batch)
        snapshot = day_rows.snapshot_of_day(conn, day)
    typed = pa.Table.from_batches(typed_batches, schema=TYPED_SCHEMA)
    if typed.num_rows != snapshot.rows:
        raise ExportError(f"{day}: PostgreSQL counts {snapshot.rows} rows but {typed.num_rows} were streamed")
    raw = pa.Table.from_batches(raw_batches, schema=RAW_SCHEMA) if include_raw else None
    return typed, raw, snapshot


def merge_day(
    conn: psycopg.Connection,
    day: date,
    path: Path,
    *,
    exported_rows: int,
    exported_up_to: datetime | None,
    raw_path: Path | None = None,
    record: Record | None = None,
    replace: Replace = os.replace,
) -> WrittenDay:
    """Rewrite a day's export as its rows plus the PostgreSQL rows of the day it lacks, atomically.

    PostgreSQL rows whose event_id the export already holds are left out (a replay re-sends events
    the dropped partition held). The result is in row order and is checked to hold `exported_rows`
    plus the rows added; `max_received_at` covers every PostgreSQL row seen, kept or not.
    """
    for existing in (path, raw_path):
        if existing is not None and (on_disk := parquet_rows(existing)) != exported_rows:
            raise ExportError(f"{day}: {existing} holds {on_disk} rows, {exported_rows} recorded")
    typed_late, raw_late, snapshot = _postgres_day(conn, day, include_raw=raw_path is not None)
    keep = _absent_from(path, typed_late["event_id"])
    typed_late = typed_late.filter(keep)
    expected = exported_rows + typed_late.num_rows
    received = [moment for moment in (exported_up_to, snapshot.max_received_at) if moment is not None]
    written = WrittenDay(
        day=day, path=path, raw_path=raw_path, rows=expected, max_received_at=max(received, default=None)
    )
    with day_writers(path, raw_path) as (typed, raw):
        _merge_sorted(typed, path, TYPED_SCHEMA, typed_late)
        if raw is not None and raw_path is not None and raw_late is not None:
            _merge_sorted(raw, raw_path, RAW_SCHEMA, raw_late.filter(keep))
        what = f"{day}: {exported_rows} exported rows and {typed_late.num_rows} late ones"
        with replaced_together((typed, raw), expected, what, replace=replace):
            if record is not None:
                record(written)
    log.info("merged %d late rows of %s into its export (%d rows)", typed_late.num_rows, day, expected)
    return written


def rows_not_exported(conn: psycopg.Connection, export_dir: Path, day: date) -> int:
    """How many of PostgreSQL's rows of the day the typed export lacks, by event_id."""
    start, end = day_bounds(day)
    with conn.transaction():
        rows = conn.execute(
            "SELECT event_id::text FROM recent_changes WHERE event_time >= %s AND event_time < %s",
            (start, end),
        ).fetchall()
    ids = pa.array([row[0] for row in rows], type=pa.string())
    return int(pc.sum(_absent_from(layout.day_path(export_dir, day), ids)).as_py() or 0)


def export_day(
    conn: psycopg.Connection,
    export_dir: Path,
    day: date,
    *,
    include_raw: bool = True,
    replace: Replace = os.replace,
) -> DayExport:
    """Export a day to its Parquet files, replacing any earlier export, and record it in `day_exports`.

    The day's files are replaced together and recorded before the old ones are let go: on any failure
    the previous export's files are put back as they were.
    """
    started = datetime.now(UTC)
    target = layout.day_path(export_dir, day)
    raw_target = layout.raw_day_path(export_dir, day) if include_raw else None
    previous = bookkeeping.recorded_export(conn, export_dir, day)

    def record(written: WrittenDay) -> None:
        size = written.path.stat().st_size
        bookkeeping.record_export(
            conn,
            day,
            rows=written.rows,
            size=size,
            max_received_at=written.max_received_at,
            exported_at=started,
        )

    if (
        previous is not None
        and previous.verified_at is not None
        and previous.rows > 0
        and target.is_file()
        and bookkeeping.exported_rows_gone(conn, previous)
    ):
        # The partition was dropped after export and late rows re-created it: keep the exported rows.
        written = merge_day(
            conn,
            day,
            target,
            exported_rows=previous.rows,
            exported_up_to=previous.max_received_at,
            raw_path=previous.raw_path if include_raw else None,
            record=record,
            replace=replace,
        )
    else:
        # An export never shrinks: ingestion only adds rows, so fewer rows means dropped ones.
        min_rows = previous.rows if previous else 0
        written = write_day(
            conn, day, target, raw_path=raw_target, min_rows=min_rows, record=record, replace=replace
        )
    exported = bookkeeping.recorded_export(conn, export_dir, day)
    if exported is None or exported.rows != written.rows:
        raise ExportError(f"{day}: exported {written.rows} rows but day_exports records {exported}")
    log.info("exported %s: %d rows, %d bytes", day, exported.rows, exported.bytes)
    return exported


@contextlib.contextmanager
def scratch_day(conn: psycopg.Connection, day: date, directory: Path) -> Iterator[WrittenDay]:
    """A day's typed rows in a throw-away Parquet file (for roll-ups of days not yet exported)."""
    path = layout.scratch_path(directory, day)
    try:
        yield write_day(conn, day, path)
    finally:
        path.unlink(missing_ok=True)
