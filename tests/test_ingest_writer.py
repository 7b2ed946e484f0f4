"""The batch writer on real PostgreSQL: one transaction per batch, duplicates dropped, bad rows isolated."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest
from psycopg import sql

from ingestion.backoff import ReconnectPolicy
from ingestion.batch import Batch, QuarantinedEvent
from ingestion.copy_rows import COPY_COLUMNS
from ingestion.events import INGEST_COLUMNS, ChangeRow
from ingestion.gaps import IngestGap
from ingestion.pipeline import IngestPipeline, PipelineOptions
from ingestion.resilient_writer import ResilientWriter, WriterStopped
from ingestion.sources import open_file_source
from ingestion.writer import BatchWriter
from teston.core import partitions
from teston.core.schema import RECENT_CHANGE_COLUMNS
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR

STREAM = "https://stream.example/recentchange"


def change(moment: datetime, event_id: uuid.UUID | None = None, raw: str = "{}") -> ChangeRow:
    return ChangeRow(
        moment,
        event_id or uuid.uuid4(),
        "enwiki",
        "en.wikipedia.org",
        "en",
        "wikipedia",
        "edit",
        0,
        "Earth",
        "Someone",
        False,
        False,
        None,
        100,
        120,
        1,
        2,
        3,
        None,
        None,
        "a comment",
        raw,
    )


def test_a_batch_commits_rows_cursor_quarantine_gaps_and_arrivals(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    day_one = datetime(2021, 8, 27, 23, 59, 59, tzinfo=UTC)
    day_two = datetime(2021, 8, 28, 0, 0, 1, tzinfo=UTC)
    repeated = uuid.uuid4()
    gap = IngestGap(STREAM, datetime(2021, 8, 1, tzinfo=UTC), day_one)
    batch = Batch(
        stream=STREAM,
        rows=[change(day_one, repeated), change(day_one, repeated), change(day_two, raw='{"a": [1, "b"]}')],
        quarantined=[
            QuarantinedEvent(STREAM, "invalid JSON", "{"),
            QuarantinedEvent(STREAM, "invalid JSON", "{"),
        ],
        position="[42]",
        last_event_time=day_two,
        gaps=[gap],
    )
    outcome = writer.commit(batch)
    assert (outcome.inserted, outcome.duplicates, outcome.new_quarantine_records) == (2, 1, 1)
    assert outcome.days == {date(2021, 8, 27), date(2021, 8, 28)}
    assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (2,)
    assert conn.execute("SELECT raw FROM recent_changes WHERE event_time = %s", (day_two,)).fetchone() == (
        {"a": [1, "b"]},
    )
    assert conn.execute("SELECT last_event_id, last_event_time FROM stream_cursors").fetchall() == [
        ("[42]", day_two)
    ]
    assert conn.execute("SELECT day FROM day_arrivals ORDER BY day").fetchall() == [
        (date(2021, 8, 27),),
        (date(2021, 8, 28),),
    ]
    assert conn.execute("SELECT source, reason, payload FROM rejected_events").fetchall() == [
        (STREAM, "invalid JSON", "{")
    ]

    # The same batch again (a resume's overlap, or a retry after a lost acknowledgement) changes nothing
    # but the arrival times it does not touch.
    arrivals = conn.execute("SELECT day, last_received_at FROM day_arrivals ORDER BY day").fetchall()
    again = writer.commit(batch)
    assert (again.inserted, again.duplicates, again.new_quarantine_records) == (0, 3, 0)
    assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM rejected_events").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM ingest_gaps").fetchone() == (1,)
    assert conn.execute("SELECT day, last_received_at FROM day_arrivals ORDER BY day").fetchall() == arrivals


def test_the_cursor_never_moves_back_in_time(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    later = datetime(2021, 8, 27, 13, 21, tzinfo=UTC)
    writer.commit(Batch(STREAM, [change(later)], position="[1]", last_event_time=later))
    earlier = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    writer.commit(Batch(STREAM, [change(earlier)], position="[2]", last_event_time=earlier))
    cursor = writer.read_cursor(STREAM)
    assert cursor is not None
    assert (cursor.position, cursor.last_event_time) == ("[2]", later)


def test_a_row_the_database_refuses_is_quarantined_and_the_rest_stored(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    # jsonb refuses the \u0000 escape; the parser repairs it, but the writer must not depend on that.
    refused = change(moment, raw='{"title": "\\u0000"}')
    outcome = writer.commit(Batch(STREAM, [change(moment), refused, change(moment)], position="[7]"))
    assert (outcome.inserted, outcome.quarantined_rows, outcome.new_quarantine_records) == (2, 1, 1)
    ((source, reason, payload),) = conn.execute(
        "SELECT source, reason, payload FROM rejected_events"
    ).fetchall()
    assert (source, payload) == (STREAM, '{"title": "\\u0000"}')
    assert reason.startswith("database: UntranslatableCharacter")
    assert conn.execute("SELECT last_event_id FROM stream_cursors").fetchone() == ("[7]",)


def test_a_writer_that_cannot_reach_postgres_commits_nothing_and_gives_up_when_told(db_url: str) -> None:
    def unreachable() -> psycopg.Connection:
        return psycopg.connect("host=127.0.0.1 port=1 connect_timeout=1")

    writer = ResilientWriter(unreachable)
    writer.give_up()
    with pytest.raises(WriterStopped):
        writer.commit(Batch(STREAM, [change(datetime(2021, 8, 27, tzinfo=UTC))], position="[1]"))
    assert writer.outages == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM stream_cursors").fetchone() == (0,)


def test_a_partition_dropped_after_it_was_seen_is_created_again(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    writer.commit(Batch(STREAM, [change(moment)], position="[1]"))
    with conn.transaction():
        partitions.drop_partition(conn, date(2021, 8, 27))  # retention, behind the writer's back
    outcome = writer.commit(Batch(STREAM, [change(moment)], position="[2]"))
    assert (outcome.inserted, outcome.quarantined_rows) == (1, 0)
    assert conn.execute("SELECT count(*) FROM rejected_events").fetchone() == (0,)


async def test_a_stop_while_postgres_is_away_gives_up_after_the_grace_period(db_url: str) -> None:
    def unreachable() -> psycopg.Connection:
        return psycopg.connect("host=127.0.0.1 port=1 connect_timeout=1")

    source = open_file_source(DATA_DIR / "2021-08-27_all-wikis_1950.jsonl")
    writer = ResilientWriter(unreachable, policy=ReconnectPolicy(initial=0.02, maximum=0.05))
    pipeline = IngestPipeline(source, writer, WikiCatalog.load(), options=PipelineOptions(shutdown_grace=0.2))
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.3)
    assert not task.done()  # still retrying, as a long-running ingester must
    pipeline.stop()
    with pytest.raises(WriterStopped):
        await asyncio.wait_for(task, 10)


def test_a_batch_overlapping_stored_rows_stores_only_the_new_ones(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # What a resume sends: the direct COPY fails on the primary key and the batch goes through staging,
    # not through the row-by-row isolation meant for rows the database refuses.
    writer = BatchWriter(conn)
    day_one = datetime(2021, 8, 27, 23, 59, 59, tzinfo=UTC)
    day_two = datetime(2021, 8, 28, 0, 0, 1, tzinfo=UTC)
    stored = [change(day_one, raw='{"copy": "first"}'), change(day_one)]
    writer.commit(Batch(STREAM, stored, position="[1]", last_event_time=day_one))
    arrivals = conn.execute("SELECT day, last_received_at FROM day_arrivals").fetchall()

    again = stored[0]._replace(raw='{"copy": "second"}')
    new = change(day_two)
    outcome = writer.commit(Batch(STREAM, [again, new], position="[2]", last_event_time=day_two))
    assert (outcome.inserted, outcome.duplicates, outcome.new_quarantine_records) == (1, 1, 0)
    assert "isolating" not in caplog.text
    stored_raw = dict(conn.execute("SELECT event_id, raw FROM recent_changes").fetchall())
    assert stored_raw == {stored[0].event_id: {"copy": "first"}, stored[1].event_id: {}, new.event_id: {}}
    assert conn.execute("SELECT last_event_id FROM stream_cursors").fetchall() == [("[2]",)]
    # Only the day that received a row is bumped.
    after = dict(conn.execute("SELECT day, last_received_at FROM day_arrivals").fetchall())
    assert after[date(2021, 8, 27)] == dict(arrivals)[date(2021, 8, 27)]
    assert date(2021, 8, 28) in after

    # The next batch without stored events takes the direct path again.
    later = change(day_two)
    outcome = writer.commit(Batch(STREAM, [later], position="[3]", last_event_time=day_two))
    assert (outcome.inserted, outcome.duplicates) == (1, 0)
    assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (4,)


def test_copies_of_an_event_inside_a_batch_keep_the_first(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    first = change(moment, raw='{"copy": 1}')
    rows = [first, change(moment), first._replace(raw='{"copy": 2}'), first._replace(raw='{"copy": 3}')]
    outcome = writer.commit(Batch(STREAM, rows, position="[1]", last_event_time=moment))
    assert (outcome.inserted, outcome.duplicates) == (2, 2)
    assert conn.execute(
        "SELECT raw FROM recent_changes WHERE event_id = %s", (first.event_id,)
    ).fetchall() == [({"copy": 1},)]
    # The same event id at another time is another primary key, so another row, as it always was.
    other_time = first._replace(event_time=moment.replace(second=1))
    assert writer.commit(Batch(STREAM, [other_time, other_time])).inserted == 1


def test_a_batch_of_stored_rows_only_moves_the_cursor(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    rows = [change(moment) for _ in range(3)]
    writer.commit(Batch(STREAM, rows, position="[1]", last_event_time=moment))
    outcome = writer.commit(Batch(STREAM, rows[::-1], position="[2]", last_event_time=moment))
    assert (outcome.inserted, outcome.duplicates) == (0, 3)
    assert conn.execute("SELECT last_event_id FROM stream_cursors").fetchone() == ("[2]",)
    assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (3,)


def test_the_copy_fields_are_the_row_type_fields_and_the_schema_ingest_columns() -> None:
    # One column list: the row type's fields, the encoder's field order and the table's columns agree.
    assert COPY_COLUMNS == ChangeRow._fields == INGEST_COLUMNS
    assert tuple(c for c in RECENT_CHANGE_COLUMNS if c != "received_at") == INGEST_COLUMNS


def test_encoded_rows_read_back_as_they_were_written(conn: psycopg.Connection) -> None:
    # PostgreSQL is the judge of the binary COPY encoding: extremes, NULLs, empty and non-ASCII text.
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, 5, 123456, tzinfo=UTC)
    full = ChangeRow(
        moment,
        uuid.uuid4(),
        "kowiki",
        "ko.wikipedia.org",
        "ko",
        "wikipedia",
        "142",
        -(2**31),
        "위키백과:사랑방 😀",
        "",
        True,
        True,
        False,
        2**31 - 1,
        0,
        -(2**63),
        2**63 - 1,
        1,
        "thanks",
        "thank",
        'tab\tnew line\nbackslash\\ quote"',
        '{"é": ["\\u00e9", 1.5, null]}',
    )
    empty = ChangeRow(
        moment.replace(microsecond=0), uuid.uuid4(), "x", "x", None, "x", "log", *([None] * 3), False, None,
        None, *([None] * 7), None, "[]",
    )  # fmt: skip
    writer.commit(Batch(STREAM, [full, empty]))
    columns = sql.SQL(", ").join(map(sql.Identifier, INGEST_COLUMNS))
    query = sql.SQL("SELECT {}, raw::text FROM recent_changes").format(columns)
    stored = {row[1]: row for row in conn.execute(query).fetchall()}
    for written in (full, empty):
        row = stored[written.event_id]
        assert row[: len(INGEST_COLUMNS) - 1] == written[:-1]
        assert row[-2] == json.loads(written.raw)
    assert stored[full.event_id][-1] == '{"é": ["é", 1.5, null]}'


def test_a_row_that_does_not_fit_its_columns_is_quarantined(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    too_long = change(moment, raw='{"length": {"old": 4294967296}}')._replace(length_old=2**32)
    outcome = writer.commit(Batch(STREAM, [change(moment), too_long], position="[1]"))
    assert (outcome.inserted, outcome.quarantined_rows, outcome.new_quarantine_records) == (1, 1, 1)
    ((reason, payload),) = conn.execute("SELECT reason, payload FROM rejected_events").fetchall()
    assert reason.startswith("unencodable row: ")
    assert payload == too_long.raw
    assert conn.execute("SELECT last_event_id FROM stream_cursors").fetchone() == ("[1]",)


def test_refused_rows_are_found_among_many(conn: psycopg.Connection) -> None:
    writer = BatchWriter(conn)
    moment = datetime(2021, 8, 27, 13, 20, tzinfo=UTC)
    rows = [change(moment, raw=f'{{"n": {n}}}') for n in range(50)]
    for n in (0, 17, 18, 49):
        rows[n] = rows[n]._replace(raw=f'{{"n": {n}, "bad": "\\u0000"}}')
    stored = change(moment)
    writer.commit(Batch(STREAM, [stored]))
    outcome = writer.commit(Batch(STREAM, [*rows, stored], position="[9]"))
    assert (outcome.inserted, outcome.duplicates, outcome.quarantined_rows) == (46, 1, 4)
    payloads = sorted(payload for (payload,) in conn.execute("SELECT payload FROM rejected_events"))
    assert payloads == sorted(rows[n].raw for n in (0, 17, 18, 49))
    assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (47,)
    assert conn.execute("SELECT last_event_id FROM stream_cursors").fetchone() == ("[9]",)
