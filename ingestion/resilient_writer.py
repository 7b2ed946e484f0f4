"""`ResilientWriter`: a `BatchWriter` that outlives PostgreSQL going away, and keeps its stream locks."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from ingestion.backoff import Failure, ReconnectPolicy
from ingestion.batch import Batch, BatchOutcome, StreamCursor
from ingestion.stream_lock import StreamBusy
from ingestion.writer import BatchWriter
from teston.core.errors import IngestionError

T = TypeVar("T")

log = logging.getLogger(__name__)

# Errors that say the server or the connection is gone, not that the batch is wrong: retry the batch.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class WriterStopped(IngestionError):
    """The writer was asked to give up while the database was unreachable; the batch was not committed."""


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
