"""A UTC day's `recent_changes` rows streamed out of PostgreSQL as Arrow record batches.

PostgreSQL writes the day with `COPY (SELECT …) TO STDOUT (FORMAT CSV)` and Arrow's streaming CSV
reader parses it in C++, block by block: no Python object is made per row or per value, and only a few
blocks are in memory at once, however large the day. (A binary-protocol cursor was measured at more
than twice the time and memory.) The rows come in `(event_time, event_id)` order, so the same rows
always give the same batches.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.pq import TransactionStatus

from teston.core.errors import TestonError
from teston.core.partitions import day_bounds

# The typed columns of `recent_changes`, in table order, with their Arrow types. `raw` (the event's
# JSON) is kept apart: see RAW_SCHEMA.
TYPED_SCHEMA = pa.schema(
    [
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("wiki", pa.string(), nullable=False),
        pa.field("server_name", pa.string(), nullable=False),
        pa.field("lang", pa.string()),
        pa.field("project", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("namespace", pa.int32()),
        pa.field("title", pa.string()),
        pa.field("user_name", pa.string()),
        pa.field("bot", pa.bool_(), nullable=False),
        pa.field("minor", pa.bool_()),
        pa.field("patrolled", pa.bool_()),
        pa.field("length_old", pa.int32()),
        pa.field("length_new", pa.int32()),
        pa.field("revision_old", pa.int64()),
        pa.field("revision_new", pa.int64()),
        pa.field("rcid", pa.int64()),
        pa.field("log_type", pa.string()),
        pa.field("log_action", pa.string()),
        pa.field("comment", pa.string()),
        pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
# The event exactly as PostgreSQL keeps it (`jsonb` rendered as text), keyed like the typed rows.
RAW_SCHEMA = pa.schema(
    [
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)
TYPED_COLUMNS: tuple[str, ...] = tuple(TYPED_SCHEMA.names)

# Arrow's CSV reader reads ahead on a thread of its own, up to 32 blocks: 1 MiB blocks bound that to
# 32 MiB (4 MiB blocks held up to 128 MiB whenever PostgreSQL sent faster than the rows were written).
_CSV_BLOCK_BYTES = 1 << 20
# The settings of the day's read, local to its transaction. Arrow parses PostgreSQL's ISO
# timestamps, and a pinned zone makes every offset `+00`. Without a sort the rows come in key order
# from the primary key (event_time, event_id): they stream from the first one on, while a sort holds
# them all back until the whole day is sorted (seconds for a busy day, with this process idle).
READ_SETTINGS: tuple[str, ...] = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL enable_sort = off",
)


class TransactionInProgress(TestonError):
    """A day's snapshot was asked for on a connection already inside a transaction."""


@dataclass(frozen=True)
class DaySnapshot:
    """What PostgreSQL held for a day in the snapshot the rows were read from."""

    rows: int
    max_received_at: datetime | None


class _CopyReader(io.RawIOBase):
    """A COPY TO STDOUT stream as a readable file, filling each read from as many rows as fit."""

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk).cast("B")
            take = min(len(view) - filled, len(self._pending))
            view[filled : filled + take] = self._pending[:take]
            self._pending = self._pending[take:]
            filled += take
        return filled


def _select(day: date, *, include_raw: bool) -> sql.Composed:
    start, end = day_bounds(day)
    columns: list[sql.Composable] = [sql.Identifier(name) for name in TYPED_COLUMNS]
    if include_raw:
        columns.append(sql.SQL("raw::text"))
    return sql.SQL(
        "COPY (SELECT {} FROM recent_changes WHERE event_time >= {} AND event_time < {}"
        " ORDER BY event_time, event_id) TO STDOUT (FORMAT CSV)"
    ).format(sql.SQL(", ").join(columns), sql.Literal(start), sql.Literal(end))


def _csv_options(include_raw: bool) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions, pa_csv.ConvertOptions]:
    names = [*TYPED_COLUMNS, *(["raw"] if include_raw else [])]
    types = {field.name: field.type for field in TYPED_SCHEMA}
    if include_raw:
        types["raw"] = pa.string()
    read = pa_csv.ReadOptions(column_names=names, block_size=_CSV_BLOCK_BYTES, use_threads=False)
    # Titles and comments may hold commas, quotes and (rarely) newlines; PostgreSQL quotes them.
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    # PostgreSQL's CSV writes NULL as an empty unquoted field and '' as `""`; nothing else is null
    # (a page titled "NULL" or "N/A" is a title, not a missing value).
    convert = pa_csv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    return read, parse, convert


def _split(batch: pa.RecordBatch, include_raw: bool) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    typed = pa.RecordBatch.from_arrays([batch.column(name) for name in TYPED_COLUMNS], schema=TYPED_SCHEMA)
    if not include_raw:
        return typed, None
    raw = pa.RecordBatch.from_arrays(
        [batch.column("event_time"), batch.column("event_id"), batch.column("raw")], schema=RAW_SCHEMA
    )
    return typed, raw


def snapshot_of_day(conn: psycopg.Connection, day: date) -> DaySnapshot:
    """Row count and latest arrival of a day, as seen by the connection's current transaction."""
    start, end = day_bounds(day)
    [row] = conn.execute(
        "SELECT count(*), max(received_at) FROM recent_changes WHERE event_time >= %s AND event_time < %s",
        (start, end),
    ).fetchall()
    return DaySnapshot(rows=int(row[0]), max_received_at=row[1])


class DayStream:
    """The day's rows as (typed batch, raw batch or None), in `(event_time, event_id)` order.

    Iterate it inside `day_transaction`. Once it is exhausted, `snapshot` says what PostgreSQL sent:
    the row count of its own COPY command tag (`COPY n`) and the latest `received_at` among the rows,
    so a day is counted from the read itself rather than by a second scan of it.
    """

    def __init__(self, conn: psycopg.Connection, day: date, *, include_raw: bool = False) -> None:
        self._conn = conn
        self._day = day
        self._include_raw = include_raw
        self._snapshot: DaySnapshot | None = None

    @property
    def snapshot(self) -> DaySnapshot:
        if self._snapshot is None:
            raise RuntimeError("the day's rows were not all read yet")
        return self._snapshot

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch | None]]:
        for setting in READ_SETTINGS:
            self._conn.execute(setting)
        read, parse, convert = _csv_options(self._include_raw)
        latest: datetime | None = None
        cursor = self._conn.cursor()
        with cursor.copy(_select(self._day, include_raw=self._include_raw)) as copy:
            stream = io.BufferedReader(_CopyReader(copy), buffer_size=1 << 20)
            try:
                reader = pa_csv.open_csv(
                    stream, read_options=read, parse_options=parse, convert_options=convert
                )
            except pa.ArrowInvalid as exc:
                # Arrow refuses an empty input (no header, no rows): that is simply an empty day.
                if "Empty CSV file" not in str(exc):
                    raise
                reader = None
            for batch in reader or ():
                if batch.num_rows:
                    typed, raw = _split(batch, self._include_raw)
                    newest = pc.max(typed.column("received_at")).as_py()
                    latest = newest if latest is None or newest > latest else latest
                    yield typed, raw
        self._snapshot = DaySnapshot(rows=max(cursor.rowcount, 0), max_received_at=latest)


def stream_day(
    conn: psycopg.Connection, day: date, *, include_raw: bool = False
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch | None]]:
    """Yield the day's rows as (typed batch, raw batch or None), in `(event_time, event_id)` order.

    Runs in the caller's transaction: call it inside `day_transaction` so that the rows and
    `snapshot_of_day` describe the same instant.
    """
    yield from DayStream(conn, day, include_raw=include_raw)


@contextlib.contextmanager
def day_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A read-only REPEATABLE READ transaction: one snapshot for a day's rows, count and arrivals."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise TransactionInProgress("day_transaction needs a connection that is not inside a transaction")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
