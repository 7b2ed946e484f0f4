"""Committing batches of events: rows, quarantine, cursor, gaps and day arrivals in one transaction.

Exactly-once rests on two facts: the stream cursor is written in the same transaction as the rows it
covers, and `(event_time, event_id)` is the primary key, so nothing a resume sends twice is stored twice.

Most batches hold no event already stored (a live stream repeats events only right after a resume), so
rows are first copied straight into `recent_changes`, inside a savepoint: one pass of the server over the
rows, as a plain `COPY` would make. A row already stored makes that COPY fail on the primary key; the
savepoint is rolled back and the batch takes the slow path: COPY into a per-connection temporary staging
table, then one `INSERT … SELECT … ON CONFLICT DO NOTHING`. Copies of one event inside a batch are
dropped before either path (the first copy wins), as the primary key would.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import postgres, pq, sql
from psycopg.adapt import Dumper

from ingestion.backoff import Failure, ReconnectPolicy
from ingestion.events import INGEST_COLUMNS
from ingestion.gaps import IngestGap
from teston.partitions import PARENT_TABLE, day_of, ensure_partitions

T = TypeVar("T")

_EVENT_TIME = INGEST_COLUMNS.index("event_time")
_EVENT_ID = INGEST_COLUMNS.index("event_id")
_RAW = INGEST_COLUMNS.index("raw")

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
    """Everything one transaction commits; `position` is the cursor after the batch's last event."""

    stream: str
    rows: Sequence[tuple[Any, ...]]
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


# The direct path's bookkeeping in one statement: every row was stored, so every day of the batch got rows.
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

_MOVE_ROWS = sql.SQL(
    """
    WITH inserted AS (
        INSERT INTO recent_changes ({columns})
        SELECT {selected} FROM {staging}
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

_INSERT_ONE = sql.SQL(
    """
    WITH inserted AS (
        INSERT INTO recent_changes ({columns}) VALUES ({values})
        ON CONFLICT DO NOTHING
        RETURNING event_time
    ), arrived AS (
        INSERT INTO day_arrivals (day, last_received_at)
        SELECT (event_time AT TIME ZONE 'UTC')::date, now() FROM inserted
        ON CONFLICT (day) DO UPDATE SET last_received_at = EXCLUDED.last_received_at
    )
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

# The cursor moves in the same statement as the rows, saving a round trip per batch.
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


class _RawJsonbDumper(Dumper):
    """`raw` (the event's JSON text) as binary `jsonb`: a version byte, then the text, never re-serialised."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


def _first_copies(rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
    """The rows without later copies of an event already in the batch (same primary key)."""
    if len({row[_EVENT_ID] for row in rows}) == len(rows):
        return rows  # the usual case: one set, no per-row Python beyond it
    first: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    for row in rows:
        first.setdefault((row[_EVENT_TIME], row[_EVENT_ID]), row)
    return list(first.values())


class BatchWriter:
    """Commits batches on one open connection (not thread-safe; one batch at a time)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._column_types: list[int] = []
        self._columns = sql.SQL(", ").join(map(sql.Identifier, INGEST_COLUMNS))
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(STAGING_TABLE), self._columns
        )
        self._copy_direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(PARENT_TABLE), self._columns
        )
        self._arrivals = _ARRIVALS.format(cursor=sql.SQL(""))
        self._arrivals_with_cursor = _ARRIVALS.format(cursor=sql.SQL(_CURSOR_CTE))
        # Only COPY looks dumpers up by type oid, so this changes nothing else on the connection.
        conn.adapters.register_dumper(None, _RawJsonbDumper)
        selected = [
            sql.SQL("{}::jsonb").format(sql.Identifier(c)) if c == "raw" else sql.Identifier(c)
            for c in INGEST_COLUMNS
        ]
        move = {
            "columns": self._columns,
            "selected": sql.SQL(", ").join(selected),
            "staging": sql.Identifier(STAGING_TABLE),
        }
        self._move = _MOVE_ROWS.format(**move, cursor=sql.SQL(""))
        self._move_with_cursor = _MOVE_ROWS.format(**move, cursor=sql.SQL(_CURSOR_CTE))
        # Days whose partition this connection has seen to exist, so most batches skip the catalog.
        self._known_days: set[date] = set()
        values = [sql.SQL("%s::jsonb") if c == "raw" else sql.SQL("%s") for c in INGEST_COLUMNS]
        self._insert_one = _INSERT_ONE.format(columns=self._columns, values=sql.SQL(", ").join(values))
        self._prepare()

    def _prepare(self) -> None:
        # A temporary table lives as long as the connection and is invisible to others; ON COMMIT
        # DELETE ROWS empties it at every commit, and a rollback discards a half-copied batch.
        # Its types come from `recent_changes` itself (raw as text, cast on the way in, so the payload's
        # JSON text is never re-serialised in Python).
        selected = [sql.SQL("raw::text AS raw") if c == "raw" else sql.Identifier(c) for c in INGEST_COLUMNS]
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                    " AS SELECT {} FROM recent_changes WITH NO DATA"
                ).format(sql.Identifier(STAGING_TABLE), sql.SQL(", ").join(selected))
            )
            rows = self.conn.execute(
                "SELECT atttypid::int FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (f"pg_temp.{STAGING_TABLE}",),
            ).fetchall()
        self._column_types = [oid for (oid,) in rows]
        self._direct_types = [
            postgres.types["jsonb"].oid if column == "raw" else oid
            for column, oid in zip(INGEST_COLUMNS, self._column_types, strict=True)
        ]

    def read_cursor(self, stream: str) -> StreamCursor | None:
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT last_event_id, last_event_time FROM stream_cursors WHERE stream = %s", (stream,)
            ).fetchone()
        return StreamCursor(stream, row[0], row[1]) if row else None

    def commit(self, batch: Batch) -> BatchOutcome:
        """Commit the batch atomically; on a row the database refuses, quarantine that row instead."""
        started = time.perf_counter()
        days = self._days_of(batch.rows)
        refused: list[QuarantinedEvent] = []
        try:
            inserted, rejected = self._commit_whole(batch, days)
        except ROW_ERRORS as exc:
            # The partition of a known day may have been dropped (retention) since it was cached: check
            # them all again before blaming the rows.
            self._known_days.clear()
            try:
                inserted, rejected = self._commit_whole(batch, days)
            except ROW_ERRORS:
                log.warning("batch refused by the database (%s); isolating the offending rows", exc)
                with self.conn.transaction():
                    ensure_partitions(self.conn, days)
                    inserted, refused = self._insert_one_by_one(batch)
                    rejected = self._finish(batch, refused, cursor_saved=False)
        self._known_days |= days
        return BatchOutcome(
            inserted=inserted,
            duplicates=len(batch.rows) - inserted - len(refused),
            rejected=rejected,
            seconds=time.perf_counter() - started,
            refused_rows=len(refused),
            days=frozenset(days),
        )

    @staticmethod
    def _days_of(rows: Sequence[tuple[Any, ...]]) -> set[date]:
        # Distinct times first: a batch spans a few minutes of second-resolution times, so this stays
        # off the per-row path.
        return {day_of(moment) for moment in {row[_EVENT_TIME] for row in rows}}

    def _commit_whole(self, batch: Batch, days: set[date]) -> tuple[int, int]:
        """One transaction of few round trips: COPY, then one statement for arrivals and the cursor."""
        with self.conn.transaction():
            if not days <= self._known_days:
                ensure_partitions(self.conn, days)
            inserted = 0
            if batch.rows:
                rows = _first_copies(batch.rows)
                try:
                    with self.conn.transaction():  # a savepoint: a stored row undoes only the COPY
                        self._copy_rows(self._copy_direct, self._direct_types, rows)
                except psycopg.errors.UniqueViolation:
                    inserted = self._move_through_staging(batch, rows)
                else:
                    inserted = len(rows)
                    self._record_arrivals(batch, days)
            rejected = self._finish(batch, (), cursor_saved=bool(batch.rows))
        return inserted, rejected

    def _copy_rows(
        self, statement: sql.Composed, types: Sequence[int], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write(row)

    def _record_arrivals(self, batch: Batch, days: set[date]) -> None:
        if batch.position is None:
            self.conn.execute(self._arrivals, {"days": sorted(days)})
        else:
            self.conn.execute(
                self._arrivals_with_cursor, {"days": sorted(days), **self._cursor_params(batch)}
            )

    def _move_through_staging(self, batch: Batch, rows: Sequence[tuple[Any, ...]]) -> int:
        """The slow path, for a batch overlapping stored rows: stage, then insert what is new."""
        self._copy_rows(self._copy, self._column_types, rows)
        move = self._move_with_cursor if batch.position is not None else self._move
        params = self._cursor_params(batch) if batch.position is not None else None
        (inserted,) = self.conn.execute(move, params).fetchone() or (0,)
        return int(inserted)

    @staticmethod
    def _cursor_params(batch: Batch) -> dict[str, Any]:
        return {"stream": batch.stream, "position": batch.position, "time": batch.last_event_time}

    def _insert_one_by_one(self, batch: Batch) -> tuple[int, list[QuarantinedEvent]]:
        inserted = 0
        refused: list[QuarantinedEvent] = []
        for row in batch.rows:
            try:
                with self.conn.transaction():  # a savepoint per row
                    (count,) = self.conn.execute(self._insert_one, row).fetchone() or (0,)
                    inserted += int(count)
            except ROW_ERRORS as exc:
                reason = f"database: {type(exc).__name__}: {str(exc).strip()}"
                refused.append(QuarantinedEvent(batch.stream, reason, _nul_free(str(row[_RAW]))))
        return inserted, refused

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
            self.conn.execute(_SAVE_CURSOR, self._cursor_params(batch))
        return rejected


class ResilientWriter:
    """A `BatchWriter` that reconnects and retries while PostgreSQL is away; blocking, run it on a thread.

    The cursor only moves when a batch commits, so a batch retried after an outage is never half-applied.
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
        self.outages = 0

    def give_up(self) -> None:
        """Stop retrying: the batch in progress raises `WriterStopped` at its next failed attempt."""
        self._give_up.set()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.conn.close()
            self._writer = None

    def _with_retry(self, action: Callable[[BatchWriter], T]) -> T:
        attempt = 0
        while True:
            try:
                if self._writer is None:
                    self._writer = BatchWriter(self._connect())
                return action(self._writer)
            except CONNECTION_ERRORS as exc:
                self.close()
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

    def read_cursor(self, stream: str) -> StreamCursor | None:
        return self._with_retry(lambda writer: writer.read_cursor(stream))

    def commit(self, batch: Batch) -> BatchOutcome:
        return self._with_retry(lambda writer: writer.commit(batch))
