"""Daily Parquet exports: the only module that knows where a day's files live and how they are written.

Layout (Hive-partitioned, one file per day and dataset)::

    <export_dir>/recent_changes/date=YYYY-MM-DD/part-0.parquet       typed columns (day_rows.TYPED_SCHEMA)
    <export_dir>/recent_changes_raw/date=YYYY-MM-DD/part-0.parquet   event_time, event_id, raw JSON

The raw JSON lives in its own dataset because it is about seven times larger than every typed column
together: kept apart, the typed export stays under an eighth of the JSON it came from and readers that
never look at `raw` never pay for it. Readers ask this module for paths (`day_path`, `dataset_glob`, …).

Files are written to a temporary name beside the target, fsynced, verified and then renamed, so a
reader sees the old file or the new one, never half of one. The same rows always give the same bytes.

An export never loses rows. Once retention has dropped a day's raw partition the export is the only
copy of those rows; if late events re-create the partition, the day is exported again as the
exported rows plus the PostgreSQL rows they lack (`merge_day`), not from PostgreSQL alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analytics import day_rows
from analytics.day_rows import RAW_SCHEMA, TYPED_SCHEMA
from teston.partitions import day_bounds

log = logging.getLogger(__name__)

DATASET = "recent_changes"
RAW_DATASET = "recent_changes_raw"
PART_NAME = "part-0.parquet"
_PARTITION_PREFIX = "date="

# Rows per row group: large enough for good compression and statistics, small enough that the rows
# waiting to be written stay a few tens of MB (a raw row is about 1 KB, a typed row about 150 B).
TYPED_ROW_GROUP_ROWS = 256 * 1024
RAW_ROW_GROUP_ROWS = 32 * 1024
_ZSTD_LEVEL = 3
# Columns written without a dictionary or statistics (see `_DayFileWriter`).
_UNIQUE_TEXT = frozenset({"raw"})
# Rows read at a time from an existing export while merging late rows into it.
_MERGE_BATCH_ROWS = 64 * 1024
# The order of every export's rows; `event_id` is the UUID as lowercase text, which sorts as
# PostgreSQL sorts the uuid (byte by byte), so Arrow and PostgreSQL agree on it.
_ROW_ORDER = [("event_time", "ascending"), ("event_id", "ascending")]


class ExportError(RuntimeError):
    """An export could not be written or did not match PostgreSQL; the previous export is untouched."""


def day_dir(export_dir: Path, day: date, *, dataset: str = DATASET) -> Path:
    return Path(export_dir) / dataset / f"{_PARTITION_PREFIX}{day.isoformat()}"


def day_path(export_dir: Path, day: date) -> Path:
    """The typed Parquet file of a day."""
    return day_dir(export_dir, day) / PART_NAME


def raw_day_path(export_dir: Path, day: date) -> Path:
    """The raw-JSON Parquet file of a day."""
    return day_dir(export_dir, day, dataset=RAW_DATASET) / PART_NAME


def dataset_glob(export_dir: Path) -> str:
    """A glob matching every typed day file, for `read_parquet(…, hive_partitioning=true)`/`scan_parquet`."""
    return str(Path(export_dir) / DATASET / f"{_PARTITION_PREFIX}*" / "*.parquet")


def raw_dataset_glob(export_dir: Path) -> str:
    return str(Path(export_dir) / RAW_DATASET / f"{_PARTITION_PREFIX}*" / "*.parquet")


def exported_days(export_dir: Path) -> list[date]:
    """Days that have a typed export file, in order."""
    root = Path(export_dir) / DATASET
    if not root.is_dir():
        return []
    days = []
    for entry in root.iterdir():
        if entry.name.startswith(_PARTITION_PREFIX) and (entry / PART_NAME).is_file():
            with contextlib.suppress(ValueError):
                days.append(date.fromisoformat(entry.name.removeprefix(_PARTITION_PREFIX)))
    return sorted(days)


def parquet_rows(path: Path) -> int:
    """Row count from a Parquet footer (no data is read)."""
    return int(pq.ParquetFile(path).metadata.num_rows)


class _DayFileWriter:
    """Writes batches to a temporary file beside `target`, in row groups of a fixed size."""

    def __init__(self, target: Path, schema: pa.Schema, row_group_rows: int) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not `*.parquet`: a reader globbing the dataset never sees a file being written.
        self.temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        self._schema = schema
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0
        self._writer = pq.ParquetWriter(
            self.temporary,
            schema,
            compression="zstd",
            compression_level=_ZSTD_LEVEL,
            # The event's JSON never repeats and no reader filters on it: a dictionary attempt and
            # min/max statistics of kilobyte strings cost CPU (about a tenth of the raw file's) for nothing.
            use_dictionary=[name for name in schema.names if name not in _UNIQUE_TEXT],
            write_statistics=[name for name in schema.names if name not in _UNIQUE_TEXT],
        )

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        # Row-group boundaries depend only on the row count, so identical rows give identical bytes.
        while self._pending_rows >= self._row_group_rows:
            table = pa.Table.from_batches(self._pending, schema=self._schema)
            self._write_group(table.slice(0, self._row_group_rows))
            rest = table.slice(self._row_group_rows)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows

    def _write_group(self, table: pa.Table) -> None:
        # One contiguous chunk per column: page boundaries then depend on the rows alone, not on
        # how the CSV reader happened to split them into batches.
        self._writer.write_table(table.combine_chunks(), row_group_size=self._row_group_rows)

    def close(self) -> None:
        if self._pending_rows:
            self._write_group(pa.Table.from_batches(self._pending, schema=self._schema))
        self._pending = []
        self._writer.close()
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())

    def commit(self) -> None:
        os.replace(self.temporary, self.target)
        directory = os.open(self.target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self.temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _day_writers(path: Path, raw_path: Path | None) -> Iterator[tuple[_DayFileWriter, _DayFileWriter | None]]:
    """The typed file's writer and, with `raw_path`, the raw one's; on any failure both are discarded."""
    typed = _DayFileWriter(path, TYPED_SCHEMA, TYPED_ROW_GROUP_ROWS)
    raw = _DayFileWriter(raw_path, RAW_SCHEMA, RAW_ROW_GROUP_ROWS) if raw_path else None
    try:
        yield typed, raw
    except BaseException:
        for writer in (typed, raw):
            if writer is not None:
                writer.discard()
        raise


def _verify_and_commit(
    day_writers: tuple[_DayFileWriter, _DayFileWriter | None], expected: int, what: str
) -> None:
    """Close each temporary file, check it holds `expected` rows, then rename them all into place."""
    writers = [writer for writer in day_writers if writer is not None]
    for writer in writers:
        writer.close()
        on_disk = parquet_rows(writer.temporary)
        if writer.rows != expected or on_disk != expected:
            raise ExportError(
                f"{what}, {writer.rows} were written and {on_disk} are in {writer.temporary.name}"
            )
    for writer in reversed(writers):  # raw first: a typed file never points at a missing raw one
        writer.commit()


@dataclass(frozen=True)
class WrittenDay:
    """A day written to Parquet from one PostgreSQL snapshot, with its counts checked."""

    day: date
    path: Path
    raw_path: Path | None
    rows: int
    max_received_at: datetime | None


def write_day(
    conn: psycopg.Connection,
    day: date,
    path: Path,
    *,
    raw_path: Path | None = None,
    min_rows: int = 0,
) -> WrittenDay:
    """Stream a day out of PostgreSQL into `path` (and the raw JSON into `raw_path`), atomically.

    The file holds exactly the rows PostgreSQL counts in the same snapshot, or nothing is replaced.
    Fewer than `min_rows` rows is refused: it would replace an export with less than it holds.
    """
    with _day_writers(path, raw_path) as (typed, raw):
        with day_rows.day_transaction(conn):
            for typed_batch, raw_batch in day_rows.stream_day(conn, day, include_raw=raw is not None):
                typed.write(typed_batch)
                if raw is not None and raw_batch is not None:
                    raw.write(raw_batch)
            snapshot = day_rows.snapshot_of_day(conn, day)
        if snapshot.rows < min_rows:
            raise ExportError(
                f"{day}: PostgreSQL holds {snapshot.rows} rows but the export already has {min_rows};"
                " not exported again"
            )
        _verify_and_commit((typed, raw), snapshot.rows, f"{day}: PostgreSQL counts {snapshot.rows} rows")
    return WrittenDay(
        day=day, path=path, raw_path=raw_path, rows=snapshot.rows, max_received_at=snapshot.max_received_at
    )


@dataclass(frozen=True)
class RecordedExport:
    """A row of `day_exports`."""

    day: date
    path: Path
    rows: int
    bytes: int
    max_received_at: datetime | None
    exported_at: datetime
    verified_at: datetime | None


def recorded_export(conn: psycopg.Connection, day: date) -> RecordedExport | None:
    """What `day_exports` says about a day, if it was exported."""
    with conn.transaction():
        row = conn.execute(
            "SELECT day, path, rows, bytes, max_received_at, exported_at, verified_at"
            " FROM day_exports WHERE day = %s",
            (day,),
        ).fetchone()
    if row is None:
        return None
    return RecordedExport(row[0], Path(row[1]), row[2], row[3], row[4], row[5], row[6])


def _absent_from(path: Path, event_ids: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """For each of `event_ids`, whether the Parquet file at `path` lacks it (an anti-join on event_id)."""
    found = pa.array([False] * len(event_ids), type=pa.bool_())
    if len(event_ids):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_MERGE_BATCH_ROWS, columns=["event_id"]):
            found = pc.or_(found, pc.is_in(event_ids, value_set=batch.column(0)))
    return pc.invert(found)


def _merge_sorted(writer: _DayFileWriter, path: Path, schema: pa.Schema, late: pa.Table) -> None:
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
    with _day_writers(path, raw_path) as (typed, raw):
        _merge_sorted(typed, path, TYPED_SCHEMA, typed_late)
        if raw is not None and raw_path is not None and raw_late is not None:
            _merge_sorted(raw, raw_path, RAW_SCHEMA, raw_late.filter(keep))
        _verify_and_commit(
            (typed, raw),
            expected,
            f"{day}: {exported_rows} exported rows and {typed_late.num_rows} late ones",
        )
    received = [moment for moment in (exported_up_to, snapshot.max_received_at) if moment is not None]
    log.info("merged %d late rows of %s into its export (%d rows)", typed_late.num_rows, day, expected)
    return WrittenDay(
        day=day, path=path, raw_path=raw_path, rows=expected, max_received_at=max(received, default=None)
    )


def _exported_rows_gone(conn: psycopg.Connection, day: date, export: RecordedExport) -> bool:
    """Whether PostgreSQL lacks rows the export holds (its partition was dropped since)."""
    start, end = day_bounds(day)
    with conn.transaction():
        row = conn.execute(
            "SELECT count(*) FROM recent_changes"
            " WHERE event_time >= %s AND event_time < %s AND received_at <= %s",
            (start, end, export.max_received_at),
        ).fetchone()
    # Every exported row arrived by the export's max_received_at; later rows cannot stand in for them.
    return row is not None and int(row[0]) < export.rows


def rows_not_exported(conn: psycopg.Connection, export_dir: Path, day: date) -> int:
    """How many of PostgreSQL's rows of the day the typed export lacks, by event_id (caller's transaction)."""
    start, end = day_bounds(day)
    rows = conn.execute(
        "SELECT event_id::text FROM recent_changes WHERE event_time >= %s AND event_time < %s",
        (start, end),
    ).fetchall()
    ids = pa.array([row[0] for row in rows], type=pa.string())
    return int(pc.sum(_absent_from(day_path(export_dir, day), ids)).as_py() or 0)


@dataclass(frozen=True)
class DayExport:
    """A verified export of one day, as recorded in `day_exports`."""

    day: date
    path: Path
    raw_path: Path | None
    rows: int
    bytes: int
    raw_bytes: int
    max_received_at: datetime | None
    exported_at: datetime


def export_day(
    conn: psycopg.Connection, export_dir: Path, day: date, *, include_raw: bool = True
) -> DayExport:
    """Export a day to its Parquet files, replacing any earlier export, and record it in `day_exports`."""
    started = datetime.now(UTC)
    target = day_path(export_dir, day)
    raw_target = raw_day_path(export_dir, day) if include_raw else None
    previous = recorded_export(conn, day)
    if (
        previous is not None
        and previous.verified_at is not None
        and previous.rows > 0
        and target.is_file()
        and _exported_rows_gone(conn, day, previous)
    ):
        # The partition was dropped after export and late rows re-created it: keep the exported rows.
        raw_target = raw_target if raw_target is not None and raw_target.is_file() else None
        written = merge_day(
            conn,
            day,
            target,
            exported_rows=previous.rows,
            exported_up_to=previous.max_received_at,
            raw_path=raw_target,
        )
    else:
        # An export never shrinks: ingestion only adds rows, so fewer rows means dropped ones.
        min_rows = previous.rows if previous else 0
        written = write_day(conn, day, target, raw_path=raw_target, min_rows=min_rows)
    # Verified after the rename: the file readers will open is the one that was counted.
    on_disk = parquet_rows(written.path)
    if on_disk != written.rows:
        raise ExportError(f"{day}: {written.path} holds {on_disk} rows, expected {written.rows}")
    size = written.path.stat().st_size
    raw_size = raw_target.stat().st_size if raw_target else 0
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO day_exports (day, path, rows, bytes, max_received_at, exported_at, verified_at)
            VALUES (%s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (day) DO UPDATE SET path = excluded.path, rows = excluded.rows,
                bytes = excluded.bytes, max_received_at = excluded.max_received_at,
                exported_at = excluded.exported_at, verified_at = excluded.verified_at
            """,
            (day, str(written.path), written.rows, size, written.max_received_at, started),
        )
    log.info("exported %s: %d rows, %d bytes (+%d raw)", day, written.rows, size, raw_size)
    return DayExport(
        day=day,
        path=written.path,
        raw_path=raw_target,
        rows=written.rows,
        bytes=size,
        raw_bytes=raw_size,
        max_received_at=written.max_received_at,
        exported_at=started,
    )


@contextlib.contextmanager
def scratch_day(conn: psycopg.Connection, day: date, directory: Path) -> Iterator[WrittenDay]:
    """A day's typed rows in a throw-away Parquet file (for roll-ups of days not yet exported)."""
    path = Path(directory) / f"scratch-{day.isoformat()}-{uuid.uuid4().hex}.parquet"
    try:
        yield write_day(conn, day, path)
    finally:
        path.unlink(missing_ok=True)
