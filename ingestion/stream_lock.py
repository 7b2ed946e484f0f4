"""One ingester per stream: the stream's advisory lock, who holds it, and the one line saying so.

The writer's connection holds a session-level advisory lock per stream it writes, taken before the
cursor is read, released when the connection closes: a second ingester of the stream would open a
second EventStreams connection (Wikimedia allows two per IP) and move the same cursor, maybe backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from teston.core.errors import IngestionError
from teston.core.locks import stream_lock_key


class StreamBusy(IngestionError):
    """Another ingester is already writing this stream: two would both move its cursor.

    The message says who holds it (PostgreSQL backend, client, since when) and how to proceed.
    """

    def __init__(self, message: str, *, stream: str = "", holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream
        self.holder_pid = holder_pid


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


def take_stream_lock(conn: psycopg.Connection[Any], stream: str) -> None:
    """Take the stream's lock for the session of `conn`; `StreamBusy`, naming the holder, if another has."""
    keys = stream_lock_key(stream)
    with conn.transaction():
        row = conn.execute(_TRY_STREAM_LOCK, keys).fetchone()
        if row and row[0]:
            return
        found = conn.execute(_STREAM_LOCK_HOLDER, keys).fetchone()
    holder = LockHolder(*found) if found else None
    raise StreamBusy(
        stream_busy_message(stream, holder), stream=stream, holder_pid=holder.pid if holder else None
    )


def release_stream_locks(conn: psycopg.Connection[Any]) -> None:
    """Release every advisory lock the session of `conn` holds, without waiting for it to end."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_unlock_all()")
