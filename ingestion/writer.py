"""Committing batches of events: rows, quarantine, cursor, gaps and day arrivals in one transaction.

Exactly-once rests on two facts: the stream cursor is written in the same transaction as the rows it
covers, and `(event_time, event_id)` is the primary key, so nothing a resume sends twice is stored twice.

Every transaction that stores rows first takes the arrival lock and queues a `NOTIFY recent_changes`
(`ANNOUNCE_ROWS`): writers then draw `recent_changes.arrival` numbers and commit one after another, so
rows become visible in arrival order, and live feeds (`bot.feeds`) listening are woken by the commit.

Rows are encoded for PostgreSQL's binary COPY as they are parsed (`CopyRows`), dropping later copies of an
event already in the batch, so a batch waiting for its commit holds bytes, not thousands of Python objects,
and committing it runs almost no Python. Most batches hold no event already stored (a live stream repeats
events only right after a resume), so they are copied straight into `recent_changes`: one pass of the
server over the rows, as a plain `COPY` of them would make. A row already stored makes that COPY fail on
the primary key; the transaction is rolled back and the batch takes the slow path: the same bytes are
copied into a per-connection temporary staging table and moved with one `INSERT … SELECT … ON CONFLICT
DO NOTHING`. Where the writer may (as a superuser), the direct COPY's transaction tells the server not to
log its refusal: a duplicate replay would otherwise log an ERROR per batch.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql

from ingestion.backoff import Failure, ReconnectPolicy
from ingestion.events import INGEST_COLUMNS
from ingestion.gaps import IngestGap
from teston.partitions import PARENT_TABLE, day_of, ensure_partitions

T = TypeVar("T")

log = logging.getLogger(__name__)

STAGING_TABLE = "ingest_staging"

# Errors that say the server or the connection is gone, not that the batch is wrong: retry the batch.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
# Errors that say some row is unacceptable (e.g. a `\u0000` escape that jsonb refuses): isolate the
# rows that fail and quarantine them, because nothing a stream sends may stop the ingester.
ROW_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError)


# -- rows in PostgreSQL's binary COPY format ------------------------------------------------------------
# The layout is PostgreSQL's "Binary Format" of COPY (https://www.postgresql.org/docs/current/sql-copy.html):
# a signature, then per row a 16-bit field count and per field a 32-bit length (-1 for NULL) followed by
# the type's binary send format, then a -1 field count. The types are those of `recent_changes`.

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_INT32 = struct.Struct("!i")
_LENGTH = _INT32.pack
_INT4_FIELD = struct.Struct("!ii").pack  # length 4, then an int4
_INT8_FIELD = struct.Struct("!iq").pack  # length 8, then an int8 (or a timestamptz)
_BOOL_FIELD = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00", None: _NULL}
_ROW_START = len(INGEST_COLUMNS).to_bytes(2, "big")
_UUID_LENGTH = _LENGTH(16)
_JSONB_VERSION = b"\x01"  # jsonb's binary format: a version byte, then the JSON text
# timestamptz is microseconds since 2000-01-01 UTC.
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Encoding errors of a row that does not fit its columns (`parse_event` never returns one).
_WIKI_COLUMN = INGEST_COLUMNS.index("wiki")
_EVENT_ID_COLUMN = INGEST_COLUMNS.index("event_id")
_UNENCODABLE = (struct.error, UnicodeEncodeError, OverflowError, TypeError, AttributeError, ValueError)


def _text_field(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return _LENGTH(len(data)) + data


def _int4_field(value: int | None) -> bytes:
    return _NULL if value is None else _INT4_FIELD(4, value)


@dataclass(frozen=True, slots=True)
class UnencodableRow:
    """A row that cannot be written to its columns (a value out of range, text UTF-8 cannot carry)."""

    reason: str
    payload: str


class CopyRows:
    """One batch's rows, encoded for binary COPY as they are appended; later copies of an event dropped.

    Row tuples kept until the commit would each hold a `UUID` that the cyclic garbage collector walks over
    and over (a fifth of the ingester's CPU time when batches held tuples); it never looks at bytes, and
    the writer sends them as they are.
    """

    __slots__ = (
        "_data",
        "_ends",
        "_first_times",
        "_flag_fields",
        "_log_fields",
        "_namespace_fields",
        "_other_copies",
        "_time_fields",
        "_wiki_fields",
        "received",
        "times",
        "unencodable",
    )

    def __init__(self, rows: Iterable[Sequence[Any]] = ()) -> None:
        self._data = bytearray()
        self._ends = array("q")  # where each row's bytes end in `_data`
        # Event id (as an int) → the event time of its first copy; a primary key is both, so another
        # time with the same id is another row (it has never happened, but the table would take it).
        self._first_times: dict[int, datetime] = {}
        self._other_copies: set[tuple[int, datetime]] = set()
        # Encoded fields that repeat from row to row: the event time (seconds), wiki and type, namespace,
        # flags, log type and action.
        self._time_fields: dict[datetime, bytes] = {}
        self._wiki_fields: dict[tuple[Any, ...], bytes] = {}
        self._namespace_fields: dict[int | None, bytes] = {}
        self._flag_fields: dict[tuple[Any, ...], bytes] = {}
        self._log_fields: dict[tuple[Any, ...], bytes] = {}
        self.received = 0  # rows appended, copies included
        self.times: set[datetime] = set()  # distinct event times of the rows kept
        self.unencodable: list[UnencodableRow] = []
        for row in rows:
            self.append(row)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def days(self) -> set[date]:
        """The UTC days of the rows kept (the partitions they go to)."""
        return {day_of(moment) for moment in self.times}

    def append(self, row: Sequence[Any]) -> None:
        """Add a row in `INGEST_COLUMNS` order, unless a copy of it (same primary key) is already here."""
        # The per-row path of the whole ingester: locals, cached encodings, no helper calls.
        self.received += 1
        (moment, event_id, wiki, server_name, lang, project, kind, namespace, title, user_name, bot, minor,
         patrolled, length_old, length_new, revision_old, revision_new, rcid, log_type, log_action, comment,
         raw) = row  # fmt: skip
        key = event_id.int
        first = self._first_times.get(key)
        if first is None:
            self._first_times[key] = moment
        elif first == moment or (key, moment) in self._other_copies:
            return
        else:
            self._other_copies.add((key, moment))
        try:
            head = self._time_fields.get(moment)
            if head is None:
                head = _ROW_START + _INT8_FIELD(8, (moment - _POSTGRES_EPOCH) // _MICROSECOND) + _UUID_LENGTH
                self._time_fields[moment] = head
            # Fields with few distinct values are encoded once per batch.
            wiki_key = (wiki, server_name, lang, project, kind)
            wiki_fields = self._wiki_fields.get(wiki_key)
            if wiki_fields is None:
                wiki_fields = self._wiki_fields[wiki_key] = b"".join(map(_text_field, wiki_key))
            namespace_field = self._namespace_fields.get(namespace)
            if namespace_field is None:
                namespace_field = self._namespace_fields[namespace] = _int4_field(namespace)
            flags_key = (bot, minor, patrolled)
            flags = self._flag_fields.get(flags_key)
            if flags is None:
                flags = self._flag_fields[flags_key] = b"".join(_BOOL_FIELD[flag] for flag in flags_key)
            log_key = (log_type, log_action)
            log_fields = self._log_fields.get(log_key)
            if log_fields is None:
                log_fields = self._log_fields[log_key] = _text_field(log_type) + _text_field(log_action)
            title_bytes = b"" if title is None else title.encode()
            user_bytes = b"" if user_name is None else user_name.encode()
            comment_bytes = b"" if comment is None else comment.encode()
            document = raw.encode()
            self._data += b"".join(
                (
                    head,
                    key.to_bytes(16, "big"),
                    wiki_fields,
                    namespace_field,
                    _NULL if title is None else _LENGTH(len(title_bytes)),
                    title_bytes,
                    _NULL if user_name is None else _LENGTH(len(user_bytes)),
                    user_bytes,
                    flags,
                    _NULL if length_old is None else _INT4_FIELD(4, length_old),
                    _NULL if length_new is None else _INT4_FIELD(4, length_new),
                    _NULL if revision_old is None else _INT8_FIELD(8, revision_old),
                    _NULL if revision_new is None else _INT8_FIELD(8, revision_new),
                    _NULL if rcid is None else _INT8_FIELD(8, rcid),
                    log_fields,
                    _NULL if comment is None else _LENGTH(len(comment_bytes)),
                    comment_bytes,
                    _LENGTH(len(document) + 1),
                    _JSONB_VERSION,
                    document,
                )
            )
        except _UNENCODABLE as exc:
            text = str(raw).encode("utf-8", "backslashreplace").decode("utf-8")
            self.unencodable.append(UnencodableRow(f"unencodable row: {type(exc).__name__}: {exc}", text))
            return
        self._ends.append(len(self._data))
        self.times.add(moment)

    def copy_data(self, start: int = 0, stop: int | None = None) -> Iterator[bytes | memoryview]:
        """The COPY stream of rows `start` to `stop` (all by default), signature and trailer included."""
        stop = len(self._ends) if stop is None else stop
        begin = self._ends[start - 1] if start else 0
        yield _SIGNATURE
        yield memoryview(self._data)[begin : self._ends[stop - 1] if stop else 0]
        yield _TRAILER

    def raw(self, index: int) -> str:
        """Row `index`'s JSON text (its last field), as for a quarantine record."""
        return self._field(index, len(INGEST_COLUMNS) - 1)[1:].decode()  # after jsonb's version byte

    def routing(self, index: int) -> tuple[str, UUID]:
        """Row `index`'s wiki and event id, as the bus routes and deduplicates it."""
        wiki = self._field(index, _WIKI_COLUMN).decode()
        return wiki, UUID(bytes=self._field(index, _EVENT_ID_COLUMN))

    def _field(self, index: int, column: int) -> bytes:
        position = (self._ends[index - 1] if index else 0) + 2
        for _ in range(column):
            (length,) = _INT32.unpack_from(self._data, position)
            position += 4 + max(length, 0)
        (length,) = _INT32.unpack_from(self._data, position)
        return bytes(self._data[position + 4 : position + 4 + max(length, 0)])


# -- batches and their commit -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamCursor:
    """Where a stream was last committed: its `Last-Event-ID` (or file position) and newest event time."""

    stream: str
    position: str
    last_event_time: datetime | None


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """A payload refused by the parser or the database, with where it came from and why."""

    source: str
    reason: str
    payload: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one transaction commits; `position` is the cursor after the batch's last event.

    `rows` are row tuples in `INGEST_COLUMNS` order, or already encoded (the pipeline encodes as it parses).
    """

    stream: str
    rows: Sequence[Sequence[Any]] | CopyRows
    quarantined: Sequence[QuarantinedEvent] = ()
    position: str | None = None
    last_event_time: datetime | None = None
    gaps: Sequence[IngestGap] = ()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    inserted: int
    duplicates: int
    rejected: int
    seconds: float
    # Rows the database refused that were quarantined instead (counted in `rejected`).
    refused_rows: int = 0
    days: frozenset[date] = field(default_factory=frozenset)


class WriterStopped(RuntimeError):
    """The writer was asked to give up while the database was unreachable; the batch was not committed."""


class StreamBusy(RuntimeError):
    """Another ingester is already writing this stream: two would both move its cursor.

    The message says who holds it (PostgreSQL backend, client, since when) and how to proceed.
    """

    def __init__(self, message: str, *, stream: str = "", holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream
        self.holder_pid = holder_pid


# -- one ingester per stream ------------------------------------------------------------------------
# The writer's connection holds a session-level advisory lock per stream it writes, taken before the
# cursor is read, released when the connection closes: a second ingester of the stream would open a
# second EventStreams connection (Wikimedia allows two per IP) and move the same cursor, maybe backwards.
# The lock is two int4 keys: a class of TestON's own (the partitions' DDL lock is the one-key 0x7E57_0001,
# which PostgreSQL keeps apart from two-key locks; analytics jobs use class 0x7E57_0002), and the stream's
# CRC-32, stable across processes, machines and PostgreSQL versions (unlike Python's `hash` or the
# server's internal `hashtext`). Two streams sharing a CRC-32 would only exclude each other.
STREAM_LOCK_CLASS = 0x7E57_0003


def stream_lock_key(stream: str) -> tuple[int, int]:
    """The two int4 keys of `pg_try_advisory_lock(int4, int4)` for a stream."""
    value = zlib.crc32(stream.encode())
    return STREAM_LOCK_CLASS, value - (1 << 32) if value >= 1 << 31 else value


@dataclass(frozen=True, slots=True)
class LockHolder:
    """The PostgreSQL session holding a stream's lock; fields its role may not see are None."""

    pid: int
    application_name: str | None
    client_addr: str | None
    backend_start: datetime | None


def stream_busy_message(stream: str, holder: LockHolder | None) -> str:
    """One line: which stream, who holds it, and what to do about it."""
    if holder is None:
        who = "a session that has just let go of it (try again)"
    else:
        if holder.client_addr is None:
            client = "client unknown or a local socket"
        else:
            client = f"client {holder.client_addr}"
        since = "unknown" if holder.backend_start is None else holder.backend_start.isoformat()
        who = (
            f"PostgreSQL backend pid {holder.pid} (application {holder.application_name or 'unnamed'!r},"
            f" {client}, connected since {since})"
        )
    return (
        f"stream {stream} is already being ingested by {who}; stop that ingester, or run this one without"
        " ingestion (`teston up` with INGEST_ENABLED=false)"
    )


# Session-level, so a rollback of the transaction it is taken in does not release it (PostgreSQL docs,
# "Advisory Locks"); only `pg_advisory_unlock` or the end of the session does.
_TRY_STREAM_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"

# Held from before a transaction draws arrival numbers until it commits (a transaction-level lock is
# released after the commit is visible): a reader that sees arrival n never later sees a smaller one
# appear. A one-key lock, like the partition DDL lock (`teston.partitions`); jobs use two-key locks.
ARRIVAL_LOCK_KEY = 0x7E57_0010
# Feeds LISTEN on this channel; PostgreSQL delivers the notification only if the transaction commits.
CHANGES_CHANNEL = "recent_changes"
ANNOUNCE_ROWS = f"SELECT pg_advisory_xact_lock({ARRIVAL_LOCK_KEY}), pg_notify('{CHANGES_CHANNEL}', '')"

# A two-key advisory lock shows in pg_locks as classid = key 1, objid = key 2 (as an oid), objsubid = 2.
_STREAM_LOCK_HOLDER = """
    SELECT l.pid, a.application_name, host(a.client_addr), a.backend_start
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %s::bigint::oid AND l.objid = (%s::bigint & 4294967295)::oid
      AND l.pid <> pg_backend_pid()
    ORDER BY l.pid
    LIMIT 1
"""


# Every row was stored, so every day of the batch received rows; the cursor moves in the same statement.
_ARRIVALS = sql.SQL(
    """
    WITH arrived AS (
        INSERT INTO day_arrivals (day, last_received_at)
        SELECT day, now() FROM unnest(%(days)s::date[]) AS d(day)
        ON CONFLICT (day) DO UPDATE SET last_received_at = EXCLUDED.last_received_at
    ){cursor}
    SELECT 1
    """
)

# The staged rows are consumed, so that the rows isolated part by part are moved once each.
_MOVE_ROWS = sql.SQL(
    """
    WITH staged AS (
        DELETE FROM {staging} RETURNING {columns}
    ), inserted AS (
        INSERT INTO recent_changes ({columns})
        SELECT {columns} FROM staged
        ON CONFLICT DO NOTHING
        RETURNING event_time
    ), arrived AS (
        INSERT INTO day_arrivals (day, last_received_at)
        SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date, now() FROM inserted
        ON CONFLICT (day) DO UPDATE SET last_received_at = EXCLUDED.last_received_at
    ){cursor}
    SELECT count(*) FROM inserted
    """
)

_SAVE_CURSOR = """
    INSERT INTO stream_cursors (stream, last_event_id, last_event_time, updated_at)
    VALUES (%(stream)s, %(position)s, %(time)s, now())
    ON CONFLICT (stream) DO UPDATE SET
        last_event_id = EXCLUDED.last_event_id,
        last_event_time = GREATEST(stream_cursors.last_event_time, EXCLUDED.last_event_time),
        updated_at = EXCLUDED.updated_at
"""

# The cursor moves in the same statement as the rows or the arrivals, saving a round trip per batch.
_CURSOR_CTE = f", cursor AS ({_SAVE_CURSOR})"

# The same refused payload from the same origin is one quarantine row: a resume re-sends events, and
# re-ingesting a file must change nothing.
_QUARANTINE = """
    INSERT INTO rejected_events (source, reason, payload)
    SELECT DISTINCT q.source, q.reason, q.payload
    FROM unnest(%s::text[], %s::text[], %s::text[]) AS q(source, reason, payload)
    WHERE NOT EXISTS (
        SELECT 1 FROM rejected_events r
        WHERE r.source = q.source AND r.reason = q.reason AND r.payload = q.payload
    )
"""

_RECORD_GAP = """
    INSERT INTO ingest_gaps (stream, gap_from, gap_to)
    SELECT %(stream)s, %(gap_from)s, %(gap_to)s
    WHERE NOT EXISTS (
        SELECT 1 FROM ingest_gaps
        WHERE stream = %(stream)s AND gap_from = %(gap_from)s AND gap_to = %(gap_to)s
    )
"""


def _nul_free(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a quarantined payload must still be storable.
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, INGEST_COLUMNS))

# A direct COPY refused because a row is already stored is expected (a resume, a file replayed again) and
# handled by the staging path: the server should not log an ERROR for it, once per batch of every replay.
# For this transaction only; the staging path and everything else log as configured.
_QUIET_REFUSALS = "SET LOCAL log_min_messages = fatal"


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), _COLUMNS)


class BatchWriter:
    """Commits batches on one open connection (not thread-safe; one batch at a time)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._copy_direct = _copy_statement(PARENT_TABLE)
        self._copy_staged = _copy_statement(STAGING_TABLE)
        self._arrivals = _ARRIVALS.format(cursor=sql.SQL(""))
        self._arrivals_with_cursor = _ARRIVALS.format(cursor=sql.SQL(_CURSOR_CTE))
        self._move = _MOVE_ROWS.format(
            staging=sql.Identifier(STAGING_TABLE), columns=_COLUMNS, cursor=sql.SQL("")
        )
        self._move_with_cursor = _MOVE_ROWS.format(
            staging=sql.Identifier(STAGING_TABLE), columns=_COLUMNS, cursor=sql.SQL(_CURSOR_CTE)
        )
        # Days whose partition this connection has seen to exist, so most batches skip the catalog.
        self._known_days: set[date] = set()
        self._locked: set[str] = set()  # streams whose advisory lock this connection holds
        # Known while the connection works, to recognise its server process once the connection is lost.
        self.backend_pid = conn.info.backend_pid
        # Only a superuser may change what the server logs (the embedded server's connections are one).
        self._quiet_refusals = conn.info.parameter_status("is_superuser") == "on"
        self._prepare()

    def _prepare(self) -> None:
        # A temporary table lives as long as the connection and is invisible to others; ON COMMIT
        # DELETE ROWS empties it at every commit, and a rollback discards a half-copied batch. It has the
        # columns of `recent_changes`, so the bytes of the direct COPY fit it as they are.
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                    " AS SELECT {} FROM recent_changes WITH NO DATA"
                ).format(sql.Identifier(STAGING_TABLE), _COLUMNS)
            )

    @property
    def streams(self) -> frozenset[str]:
        """The streams this connection holds the lock of."""
        return frozenset(self._locked)

    def lock_stream(self, stream: str) -> None:
        """Hold the stream's advisory lock as long as this connection lives; `StreamBusy` if another does."""
        if stream in self._locked:
            return
        keys = stream_lock_key(stream)
        with self.conn.transaction():
            row = self.conn.execute(_TRY_STREAM_LOCK, keys).fetchone()
            if row and row[0]:
                self._locked.add(stream)
                return
            found = self.conn.execute(_STREAM_LOCK_HOLDER, keys).fetchone()
        holder = LockHolder(*found) if found else None
        raise StreamBusy(
            stream_busy_message(stream, holder), stream=stream, holder_pid=holder.pid if holder else None
        )

    def close(self) -> None:
        """Release the stream locks and close the connection.

        Closing alone would release them too, but only once the server process has seen the connection
        end; the next ingester should not have to race that.
        """
        try:
            if self._locked and not self.conn.closed:
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # the connection is gone or unusable; closing it ends the session and its locks
        finally:
            self._locked.clear()
            self.conn.close()

    def read_cursor(self, stream: str) -> StreamCursor | None:
        self.lock_stream(stream)
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT last_event_id, last_event_time FROM stream_cursors WHERE stream = %s", (stream,)
            ).fetchone()
        return StreamCursor(stream, row[0], row[1]) if row else None

    def commit(self, batch: Batch) -> BatchOutcome:
        """Commit the batch atomically; on a row the database refuses, quarantine that row instead."""
        self.lock_stream(batch.stream)
        started = time.perf_counter()
        rows = batch.rows if isinstance(batch.rows, CopyRows) else CopyRows(batch.rows)
        days = rows.days
        unencodable = [QuarantinedEvent(batch.stream, row.reason, row.payload) for row in rows.unencodable]
        refused: list[QuarantinedEvent] = []
        try:
            inserted, rejected = self._commit_whole(batch, rows, days, unencodable)
        except ROW_ERRORS as exc:
            # The partition of a known day may have been dropped (retention) since it was cached: check
            # them all again before blaming the rows.
            self._known_days.clear()
            try:
                inserted, rejected = self._commit_whole(batch, rows, days, unencodable)
            except ROW_ERRORS:
                log.warning("batch refused by the database (%s); isolating the offending rows", exc)
                with self.conn.transaction():
                    self.conn.execute(ANNOUNCE_ROWS)
                    ensure_partitions(self.conn, days)
                    inserted, refused = self._isolate(batch.stream, rows, 0, len(rows))
                    rejected = self._finish(batch, [*unencodable, *refused], cursor_saved=False)
        self._known_days |= days
        refused_rows = len(refused) + len(unencodable)
        return BatchOutcome(
            inserted=inserted,
            duplicates=rows.received - inserted - refused_rows,
            rejected=rejected,
            seconds=time.perf_counter() - started,
            refused_rows=refused_rows,
            days=frozenset(days),
        )

    def _commit_whole(
        self, batch: Batch, rows: CopyRows, days: set[date], refused: Sequence[QuarantinedEvent]
    ) -> tuple[int, int]:
        if rows:
            try:
                return self._commit_direct(batch, rows, days, refused)
            except psycopg.errors.UniqueViolation:
                pass  # an event already stored: nothing was kept, the batch goes through staging
        with self.conn.transaction():
            if rows:
                self.conn.execute(ANNOUNCE_ROWS)
            self._ensure_partitions(days)
            inserted = self._stage_and_move(rows, 0, len(rows), batch) if rows else 0
            rejected = self._finish(batch, refused, cursor_saved=bool(rows))
        return inserted, rejected

    def _commit_direct(
        self, batch: Batch, rows: CopyRows, days: set[date], refused: Sequence[QuarantinedEvent]
    ) -> tuple[int, int]:
        """The usual case, in few round trips: COPY into the table, then arrivals and the cursor at once."""
        with self.conn.transaction():
            if self._quiet_refusals:
                self.conn.execute(_QUIET_REFUSALS)
            self.conn.execute(ANNOUNCE_ROWS)
            self._ensure_partitions(days)
            self._copy(self._copy_direct, rows.copy_data())
            if batch.position is None:
                self.conn.execute(self._arrivals, {"days": sorted(days)})
            else:
                self.conn.execute(self._arrivals_with_cursor, {"days": sorted(days), **_cursor_params(batch)})
            rejected = self._finish(batch, refused, cursor_saved=True)
        return len(rows), rejected

    def _ensure_partitions(self, days: set[date]) -> None:
        if not days <= self._known_days:
            ensure_partitions(self.conn, days)

    def _copy(self, statement: sql.Composed, data: Iterable[bytes | memoryview]) -> None:
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for block in data:
                copy.write(block)

    def _stage_and_move(self, rows: CopyRows, start: int, stop: int, batch: Batch | None) -> int:
        """The slow path, for rows some of which may be stored: stage them, then insert what is new."""
        self._copy(self._copy_staged, rows.copy_data(start, stop))
        if batch is None or batch.position is None:
            cur = self.conn.execute(self._move)
        else:
            cur = self.conn.execute(self._move_with_cursor, _cursor_params(batch))
        (inserted,) = cur.fetchone() or (0,)
        return int(inserted)

    def _isolate(
        self, stream: str, rows: CopyRows, start: int, stop: int
    ) -> tuple[int, list[QuarantinedEvent]]:
        """Store rows `start` to `stop`, halving around those the database refuses; quarantine those."""
        if start == stop:
            return 0, []
        try:
            with self.conn.transaction():  # a savepoint: a refused part leaves nothing behind
                return self._stage_and_move(rows, start, stop, None), []
        except ROW_ERRORS as exc:
            if stop - start == 1:
                reason = f"database: {type(exc).__name__}: {str(exc).strip()}"
                return 0, [QuarantinedEvent(stream, reason, _nul_free(rows.raw(start)))]
        middle = (start + stop) // 2
        inserted_before, refused_before = self._isolate(stream, rows, start, middle)
        inserted_after, refused_after = self._isolate(stream, rows, middle, stop)
        return inserted_before + inserted_after, refused_before + refused_after

    def _finish(self, batch: Batch, refused: Sequence[QuarantinedEvent], *, cursor_saved: bool) -> int:
        quarantined = [*batch.quarantined, *refused]
        rejected = 0
        if quarantined:
            cur = self.conn.execute(
                _QUARANTINE,
                (
                    [q.source for q in quarantined],
                    [q.reason for q in quarantined],
                    [_nul_free(q.payload) for q in quarantined],
                ),
            )
            rejected = cur.rowcount
        for gap in batch.gaps:
            self.conn.execute(
                _RECORD_GAP, {"stream": gap.stream, "gap_from": gap.gap_from, "gap_to": gap.gap_to}
            )
        if batch.position is not None and not cursor_saved:
            self.conn.execute(_SAVE_CURSOR, _cursor_params(batch))
        return rejected


def _cursor_params(batch: Batch) -> dict[str, Any]:
    return {"stream": batch.stream, "position": batch.position, "time": batch.last_event_time}


class ResilientWriter:
    """A `BatchWriter` that reconnects and retries while PostgreSQL is away; blocking, run it on a thread.

    The cursor only moves when a batch commits, so a batch retried after an outage is never half-applied.
    The stream locks the lost connection held are taken again on the new one before anything is resent;
    `StreamBusy` (another ingester took the stream meanwhile) is not an outage and is never retried.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        policy: ReconnectPolicy | None = None,
        rng: random.Random | None = None,
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._on_outage = on_outage
        self._policy = policy or ReconnectPolicy(initial=0.2, maximum=10.0)
        self._rng = rng or random.Random()
        self._writer: BatchWriter | None = None
        self._give_up = threading.Event()
        self._streams: set[str] = set()  # streams the lost connections held, to lock again after a reconnect
        self._lost_backends: set[int] = set()  # server processes of the connections lost
        self.outages = 0

    def give_up(self) -> None:
        """Stop retrying: the batch in progress raises `WriterStopped` at its next failed attempt."""
        self._give_up.set()

    def close(self) -> None:
        """Close the connection, which releases the stream locks."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _open(self) -> BatchWriter:
        writer = BatchWriter(self._connect())
        self._writer = writer
        for stream in sorted(self._streams):
            try:
                writer.lock_stream(stream)
            except StreamBusy as busy:
                if busy.holder_pid not in self._lost_backends:
                    raise
                # Our own lost connection, whose server process has not noticed yet (a network failure
                # leaves it waiting for TCP keepalives, for hours by default): end it, as an outage.
                writer.conn.execute("SELECT pg_terminate_backend(%s)", (busy.holder_pid,))
                writer.conn.commit()
                raise psycopg.OperationalError(
                    f"the lost connection (backend pid {busy.holder_pid}) still holds the lock of {stream}"
                ) from busy
        return writer

    def _with_retry(self, action: Callable[[BatchWriter], T]) -> T:
        attempt = 0
        while True:
            try:
                writer = self._writer if self._writer is not None else self._open()
                return action(writer)
            except CONNECTION_ERRORS as exc:
                self._lose_connection()
                attempt += 1
                if attempt == 1:
                    self.outages += 1
                    if self._on_outage is not None:
                        self._on_outage()
                if self._give_up.is_set():
                    raise WriterStopped(f"PostgreSQL unreachable: {exc}") from exc
                delay = self._policy.delay(attempt, Failure.SERVER_ERROR, rng=self._rng)
                log.warning(
                    "PostgreSQL unreachable (%s); retrying in %.1fs (attempt %d)",
                    str(exc).strip(),
                    delay,
                    attempt,
                )
                self._give_up.wait(delay)

    def _lose_connection(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            if writer.streams:
                self._streams |= writer.streams
                self._lost_backends.add(writer.backend_pid)
            writer.conn.close()

    def read_cursor(self, stream: str) -> StreamCursor | None:
        return self._with_retry(lambda writer: writer.read_cursor(stream))

    def commit(self, batch: Batch) -> BatchOutcome:
        return self._with_retry(lambda writer: writer.commit(batch))
