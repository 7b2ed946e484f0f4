"""One ingester per stream: the writer's connection holds the stream's advisory lock, on real PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from ingestion.backoff import ReconnectPolicy
from ingestion.batch import Batch
from ingestion.events import ChangeRow
from ingestion.pipeline import IngestPipeline
from ingestion.resilient_writer import ResilientWriter
from ingestion.sources import open_file_source
from ingestion.stream_lock import LockHolder, StreamBusy, stream_busy_message
from ingestion.writer import BatchWriter
from teston.cli.wiring import writer_connector
from teston.core.embedded import EmbeddedPostgres
from teston.core.locks import STREAM_CLASS, stream_lock_key
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR
from tests.replays import ingest_path

STREAM = "https://stream.example/recentchange"
OTHER_STREAM = "https://stream.example/page-create"
CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"
FAST = ReconnectPolicy(initial=0.02, maximum=0.2)


def change(second: int) -> ChangeRow:
    moment = datetime(2021, 8, 27, 12, 0, second, tzinfo=UTC)
    return ChangeRow(
        moment, uuid.uuid4(), "enwiki", "en.wikipedia.org", "en", "wikipedia", "edit", 0, "Earth",
        "Someone", False, False, None, 100, 120, 1, 2, 3, None, None, "a comment", "{}",
    )  # fmt: skip


def batch(number: int, stream: str = STREAM) -> Batch:
    return Batch(stream, [change(number)], position=f"[{number}]", last_event_time=change(number).event_time)


class Connections:
    """A connector for the writer that remembers the connections it opened."""

    def __init__(self, url: str) -> None:
        self._connect = writer_connector(url)
        self.opened: list[psycopg.Connection[Any]] = []

    def __call__(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        self.opened.append(conn)
        return conn

    @property
    def pid(self) -> int:
        return self.opened[-1].info.backend_pid


def stored(url: str) -> tuple[int, list[tuple[str, str]]]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
        cursors = conn.execute("SELECT stream, last_event_id FROM stream_cursors ORDER BY stream").fetchall()
    return (row[0] if row else -1), cursors


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


WriterFactory = Callable[[], tuple[ResilientWriter, Connections]]


@pytest.fixture
def writer_for(db_url: str) -> Iterator[WriterFactory]:
    """Makes writers on the test database, each with its connector; closes them all after the test."""
    made: list[ResilientWriter] = []

    def make() -> tuple[ResilientWriter, Connections]:
        connections = Connections(db_url)
        made.append(ResilientWriter(connections, policy=FAST, rng=random.Random(1)))
        return made[-1], connections

    yield make
    for writer in made:
        writer.close()


def test_the_lock_key_is_two_int4_stable_and_per_stream() -> None:
    namespace, key = stream_lock_key(STREAM)
    assert namespace == STREAM_CLASS == 0x7E57_0003
    assert (namespace, key) == stream_lock_key(STREAM)
    assert key != stream_lock_key(OTHER_STREAM)[1]
    for stream in (STREAM, OTHER_STREAM, "file:/tmp/a.jsonl", ""):
        assert -(2**31) <= stream_lock_key(stream)[1] < 2**31
    # zlib.crc32, folded into int4 (the second key of `pg_try_advisory_lock(int4, int4)`).
    assert stream_lock_key("file:/tmp/a.jsonl")[1] == 0x5DBB_E971
    assert key == 0xB8FD_C33F - 2**32


def test_the_busy_message_names_the_stream_the_holder_and_what_to_do() -> None:
    since = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    message = stream_busy_message(STREAM, LockHolder(4242, "teston-ingest", "10.0.0.7", since))
    assert message == (
        f"stream {STREAM} is already being ingested by PostgreSQL backend pid 4242 (application"
        " 'teston-ingest', client 10.0.0.7, connected since 2026-11-27T23:00:00+00:00); stop that ingester,"
        " or run this one without ingestion (`teston up` with INGEST_ENABLED=false)"
    )
    assert "\n" not in message
    hidden = stream_busy_message(STREAM, LockHolder(7, None, None, None))
    assert (
        "pid 7 (application 'unnamed', client unknown or a local socket, connected since unknown)" in hidden
    )
    assert "has just let go of it" in stream_busy_message(STREAM, None)


def test_a_second_writer_of_the_same_stream_is_refused_and_names_the_holder(
    db_url: str, writer_for: WriterFactory
) -> None:
    first, first_connections = writer_for()
    second, _ = writer_for()
    assert first.read_cursor(STREAM) is None
    first.commit(batch(1))
    holder = first_connections.pid
    with pytest.raises(StreamBusy) as refused:
        second.read_cursor(STREAM)
    message = str(refused.value)
    assert refused.value.stream == STREAM
    assert refused.value.holder_pid == holder
    assert message.startswith(
        f"stream {STREAM} is already being ingested by PostgreSQL backend pid {holder} "
    )
    assert "application 'teston-ingest'" in message
    assert "INGEST_ENABLED=false" in message
    # Nor may it write: nothing of its batch is stored, the cursor stays the first writer's.
    with pytest.raises(StreamBusy):
        second.commit(batch(2))
    assert second.outages == 0  # not an outage, not retried
    assert stored(db_url) == (1, [(STREAM, "[1]")])


def test_a_plain_batch_writer_takes_the_lock_before_writing(db_url: str) -> None:
    with psycopg.connect(db_url) as holder_conn, psycopg.connect(db_url) as other_conn:
        holder = BatchWriter(holder_conn)
        other = BatchWriter(other_conn)
        holder.commit(batch(1))
        assert holder.streams == {STREAM}
        with pytest.raises(StreamBusy, match=f"pid {holder_conn.info.backend_pid} "):
            other.commit(batch(2))
        assert other.streams == frozenset()
    assert stored(db_url) == (1, [(STREAM, "[1]")])


def test_another_stream_is_not_blocked(db_url: str, writer_for: WriterFactory) -> None:
    first, _ = writer_for()
    second, _ = writer_for()
    first.commit(batch(1))
    assert second.read_cursor(OTHER_STREAM) is None
    second.commit(batch(2, OTHER_STREAM))
    assert stored(db_url) == (2, [(OTHER_STREAM, "[2]"), (STREAM, "[1]")])


def test_once_the_holder_closes_the_next_writer_takes_the_stream(
    db_url: str, writer_for: WriterFactory
) -> None:
    first, _ = writer_for()
    second, second_connections = writer_for()
    first.commit(batch(1))
    with pytest.raises(StreamBusy):
        second.read_cursor(STREAM)
    first.close()
    first.close()  # closing twice is harmless
    cursor = second.read_cursor(STREAM)
    assert cursor is not None
    assert cursor.position == "[1]"
    second.commit(batch(2))
    assert stored(db_url) == (2, [(STREAM, "[2]")])
    # Now the first one is the one refused, naming the second.
    with pytest.raises(StreamBusy, match=f"pid {second_connections.pid} "):
        first.read_cursor(STREAM)


def test_after_a_connection_loss_the_writer_takes_the_lock_again_and_commits(
    db_url: str, writer_for: WriterFactory
) -> None:
    writer, connections = writer_for()
    other, _ = writer_for()
    writer.read_cursor(STREAM)
    writer.commit(batch(1))
    lost = connections.pid
    terminate(db_url, lost)
    outcome = writer.commit(batch(2))
    assert outcome.inserted == 1
    assert writer.outages == 1
    assert len(connections.opened) == 2
    assert connections.pid != lost
    assert stored(db_url) == (2, [(STREAM, "[2]")])
    # The new connection holds the lock.
    with pytest.raises(StreamBusy, match=f"pid {connections.pid} "):
        other.read_cursor(STREAM)


def test_a_stream_taken_by_another_writer_during_an_outage_stops_the_writer(
    db_url: str, writer_for: WriterFactory
) -> None:
    writer, connections = writer_for()
    other, other_connections = writer_for()
    writer.read_cursor(STREAM)
    writer.commit(batch(1))
    terminate(db_url, connections.pid)
    other.read_cursor(STREAM)  # takes the stream while the first writer is away
    with pytest.raises(StreamBusy) as refused:
        writer.commit(batch(2))
    assert refused.value.holder_pid == other_connections.pid
    assert f"pid {other_connections.pid} " in str(refused.value)
    assert writer.outages == 1
    assert stored(db_url) == (1, [(STREAM, "[1]")])  # the batch was not resent
    other.commit(batch(3))
    assert stored(db_url) == (2, [(STREAM, "[3]")])


def test_a_lost_connection_whose_server_process_lingers_is_ended_not_taken_for_another_writer(
    db_url: str, pg_server: object, caplog: pytest.LogCaptureFixture, writer_for: WriterFactory
) -> None:
    # A network failure can leave the server process of the lost connection alive, lock and all, until
    # TCP keepalives notice. Here it is frozen (SIGSTOP) while the client side of its socket is shut.
    if not isinstance(pg_server, EmbeddedPostgres):
        pytest.skip("needs the suite's own server, to freeze one of its processes")
    writer, connections = writer_for()
    writer.commit(batch(1))
    lingering = connections.pid
    os.kill(lingering, signal.SIGSTOP)
    thawed = threading.Timer(0.5, os.kill, (lingering, signal.SIGCONT))
    thawed.start()
    try:
        socket.socket(fileno=os.dup(connections.opened[-1].fileno())).shutdown(socket.SHUT_RDWR)
        outcome = writer.commit(batch(2))
    finally:
        thawed.join()
    assert outcome.inserted == 1
    assert writer.outages == 1
    assert stored(db_url) == (2, [(STREAM, "[2]")])
    with psycopg.connect(db_url) as conn:
        alive = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (lingering,)).fetchone()
    assert alive == (0,)
    assert f"the lost connection (backend pid {lingering}) still holds the lock of {STREAM}" in caplog.text


async def test_a_pipeline_on_a_busy_stream_stops_before_committing_anything(
    db_url: str, writer_for: WriterFactory
) -> None:
    source = open_file_source(CAPTURE)
    holder, holder_connections = writer_for()
    writer, _ = writer_for()
    holder.read_cursor(source.stream)
    pipeline = IngestPipeline(source, writer, WikiCatalog.load())
    with pytest.raises(StreamBusy, match=f"pid {holder_connections.pid} "):
        await pipeline.run()
    assert pipeline.summary.batches == 0
    assert stored(db_url) == (0, [])


def test_two_replays_of_one_file_do_not_run_at_once(db_url: str, writer_for: WriterFactory) -> None:
    holder, holder_connections = writer_for()
    holder.read_cursor(f"file:{CAPTURE.resolve()}")
    with pytest.raises(StreamBusy, match=f"pid {holder_connections.pid} "):
        ingest_path(db_url, CAPTURE)
    assert stored(db_url) == (0, [])
    holder.close()
    summary = ingest_path(db_url, CAPTURE)
    assert summary.ingested == 1950
    assert stored(db_url)[0] == 1950
