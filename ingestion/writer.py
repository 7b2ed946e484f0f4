"""Committing batches of events: rows, quarantine, cursor, gaps and day arrivals in one transaction.

Exactly-once rests on two facts: the stream cursor is written in the same transaction as the rows it
covers, and `(event_time, event_id)` is the primary key, so nothing a resume sends twice is stored twice.

Every transaction that stores rows first takes the arrival lock and queues a `NOTIFY recent_changes`
naming the batch's wikis (`announce_rows`): writers then draw `recent_changes.arrival` numbers and
commit one after another, so rows become visible in arrival order, and the bot listening (its live
feeds, its read cache) hears of the commit.

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

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from ingestion.batch import Batch, BatchOutcome, QuarantinedEvent, StreamCursor
from ingestion.copy_rows import CopyRows
from ingestion.events import INGEST_COLUMNS
from ingestion.stream_lock import release_stream_locks, take_stream_lock
from teston.core.locks import ARRIVAL_KEY
from teston.core.notices import CHANGES_CHANNEL, wikis_payload
from teston.core.partitions import PARENT_TABLE, ensure_partitions

log = logging.getLogger(__name__)

STAGING_TABLE = "ingest_staging"

# Errors that say some row is unacceptable (e.g. a `\u0000` escape that jsonb refuses): isolate the
# rows that fail and quarantine them, because nothing a stream sends may stop the ingester.
ROW_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError)


# `ARRIVAL_KEY` is held from before a transaction draws arrival numbers until it commits (a
# transaction-level lock is released after the commit is visible): a reader that sees arrival n never
# later sees a smaller one appear.
# The bot LISTENs on this channel (feeds, its read cache); the payload names the batch's wikis, and
# PostgreSQL delivers the notification only if the transaction commits.
_ANNOUNCE_ROWS = sql.SQL("SELECT pg_advisory_xact_lock({key}), pg_notify({channel}, {wikis})")


def announce_rows(wikis: Iterable[str]) -> sql.Composed:
    """The statement that takes the arrival lock and queues the notice naming `wikis`."""
    return _ANNOUNCE_ROWS.format(
        key=sql.Literal(ARRIVAL_KEY),
        channel=sql.Literal(CHANGES_CHANNEL),
        wikis=sql.Literal(wikis_payload(wikis)),
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

# The direct path's closing statement: every row was stored, so every day of the batch received rows, and
# the cursor moves in the same statement. Its values are written in (`sql.Literal`): a query without
# parameters may carry the COMMIT after it, one round trip for both.
_ARRIVALS_INLINE = sql.SQL(
    """
    WITH arrived AS (
        INSERT INTO day_arrivals (day, last_received_at)
        SELECT day, now() FROM unnest({days}) AS d(day)
        ON CONFLICT (day) DO UPDATE SET last_received_at = EXCLUDED.last_received_at
    ){cursor}
    SELECT 1
    """
)
_CURSOR_INLINE = sql.SQL(
    """, cursor AS (
        INSERT INTO stream_cursors (stream, last_event_id, last_event_time, updated_at)
        VALUES ({stream}, {position}, {time}, now())
        ON CONFLICT (stream) DO UPDATE SET
            last_event_id = EXCLUDED.last_event_id,
            last_event_time = GREATEST(stream_cursors.last_event_time, EXCLUDED.last_event_time),
            updated_at = EXCLUDED.updated_at
    )"""
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
        quiet_refusals = conn.info.parameter_status("is_superuser") == "on"
        # The direct path opens its transaction with the statements that must start it, in one query.
        self._begin_direct = [sql.SQL("BEGIN"), *([sql.SQL(_QUIET_REFUSALS)] if quiet_refusals else [])]
        # Transactions are the writer's own, opened and closed by its statements or `transaction()`
        # blocks: the direct path's BEGIN and COMMIT then travel with the statements beside them.
        conn.autocommit = True
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
        if stream not in self._locked:
            take_stream_lock(self.conn, stream)
            self._locked.add(stream)

    def close(self) -> None:
        """Release the stream locks and close the connection.

        Closing alone would release them too, but only once the server process has seen the connection
        end; the next ingester should not have to race that.
        """
        try:
            if self._locked and not self.conn.closed:
                release_stream_locks(self.conn)
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
            inserted, new_records = self._commit_whole(batch, rows, days, unencodable)
        except ROW_ERRORS as exc:
            # The partition of a known day may have been dropped (retention) since it was cached: check
            # them all again before blaming the rows.
            self._known_days.clear()
            try:
                inserted, new_records = self._commit_whole(batch, rows, days, unencodable)
            except ROW_ERRORS:
                log.warning("batch refused by the database (%s); isolating the offending rows", exc)
                with self.conn.transaction():
                    self.conn.execute(announce_rows(rows.wikis))
                    ensure_partitions(self.conn, days)
                    inserted, refused = self._isolate(batch.stream, rows, 0, len(rows))
                    new_records = self._finish(batch, [*unencodable, *refused], cursor_saved=False)
        self._known_days |= days
        quarantined_rows = len(refused) + len(unencodable)
        return BatchOutcome(
            inserted=inserted,
            duplicates=rows.received - inserted - quarantined_rows,
            new_quarantine_records=new_records,
            seconds=time.perf_counter() - started,
            quarantined_rows=quarantined_rows,
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
                self.conn.execute(announce_rows(rows.wikis))
            self._ensure_partitions(days)
            inserted = self._stage_and_move(rows, 0, len(rows), batch) if rows else 0
            new_records = self._finish(batch, refused, cursor_saved=bool(rows))
        return inserted, new_records

    def _commit_direct(
        self, batch: Batch, rows: CopyRows, days: set[date], refused: Sequence[QuarantinedEvent]
    ) -> tuple[int, int]:
        """The usual case, in four round trips: BEGIN with the arrival lock, the COPY (two), then arrivals,
        cursor and COMMIT at once.

        Each round trip costs the writer thread the interpreter lock back from the parser (up to the
        switch interval, 5 ms), as many as the statements of a commit once were (see BENCHMARKS.md).
        """
        conn = self.conn
        try:
            conn.execute(sql.SQL("; ").join([*self._begin_direct, announce_rows(rows.wikis)]))
            self._ensure_partitions(days)
            self._copy(self._copy_direct, rows.copy_data())
            closing = _ARRIVALS_INLINE.format(
                days=sql.Literal(sorted(days)),
                cursor=sql.SQL("")
                if batch.position is None
                else _CURSOR_INLINE.format(
                    stream=sql.Literal(batch.stream),
                    position=sql.Literal(batch.position),
                    time=sql.Literal(batch.last_event_time),
                ),
            )
            if refused or batch.quarantined or batch.gaps:
                conn.execute(closing)
                new_records = self._finish(batch, refused, cursor_saved=True)
                conn.execute("COMMIT")
            else:
                conn.execute(sql.Composed([closing, sql.SQL("; COMMIT")]))
                new_records = 0
        except BaseException:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):  # a lost connection is the caller's to handle
                    conn.execute("ROLLBACK")
            raise
        return len(rows), new_records

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
        """Quarantine, gaps and (unless already saved) the cursor; return the quarantine records added."""
        quarantined = [*batch.quarantined, *refused]
        new_records = 0
        if quarantined:
            cur = self.conn.execute(
                _QUARANTINE,
                (
                    [q.source for q in quarantined],
                    [q.reason for q in quarantined],
                    [_nul_free(q.payload) for q in quarantined],
                ),
            )
            new_records = cur.rowcount
        for gap in batch.gaps:
            self.conn.execute(
                _RECORD_GAP, {"stream": gap.stream, "gap_from": gap.gap_from, "gap_to": gap.gap_to}
            )
        if batch.position is not None and not cursor_saved:
            self.conn.execute(_SAVE_CURSOR, _cursor_params(batch))
        return new_records


def _cursor_params(batch: Batch) -> dict[str, Any]:
    return {"stream": batch.stream, "position": batch.position, "time": batch.last_event_time}
