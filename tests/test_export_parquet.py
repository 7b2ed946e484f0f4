"""Daily Parquet exports: layout, atomic replacement, verified counts, exact values, determinism."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from analytics import bookkeeping, day_files, day_rows, exports, layout
from teston.core.schema import RECENT_CHANGE_COLUMNS
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
DAY = date(2024, 5, 1)


def event(**fields: Any) -> dict[str, Any]:
    """A minimal current-shape recentchange event on enwiki at noon of DAY."""
    moment = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    base: dict[str, Any] = {
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {"id": str(uuid.uuid4()), "dt": moment.isoformat(), "domain": "en.wikipedia.org"},
        "type": "edit",
        "namespace": 0,
        "title": "Tea",
        "timestamp": int(moment.timestamp()),
        "user": "Alice",
        "bot": False,
        "length": {"old": 10, "new": 20},
        "revision": {"old": 1, "new": 2},
        "server_name": "en.wikipedia.org",
        "wiki": "enwiki",
        "comment": "c",
    }
    return base | fields


def ingest(db_url: str, tmp_path: Path, events: list[dict[str, Any]]) -> None:
    path = tmp_path / f"events-{uuid.uuid4().hex}.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    summary = ingest_path(db_url, path)
    assert summary.ingested == len(events)


def test_the_export_covers_every_column_of_the_table() -> None:
    assert sorted([*day_rows.TYPED_COLUMNS, "raw"]) == sorted(RECENT_CHANGE_COLUMNS)


def test_layout_is_hive_partitioned_by_day(tmp_path: Path) -> None:
    assert layout.day_path(tmp_path, DAY) == (
        tmp_path / "recent_changes" / "date=2024-05-01" / "part-0.parquet"
    )
    assert layout.raw_day_path(tmp_path, DAY).parent.name == "date=2024-05-01"
    assert layout.dataset_glob(tmp_path).endswith("recent_changes/date=*/*.parquet")
    assert layout.exported_days(tmp_path) == []


def test_export_writes_verified_files_that_read_back_identically(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    awkward = [
        event(title="NULL", comment=""),
        event(title="N/A", comment='quote " comma , semicolon ;'),
        event(title="Ünïcödé — 日本語", comment="line\nbreak", user="1.2.3.4"),
        event(type="new", length={"new": 5}, revision={"new": 9}, comment=None),
        event(type="log", log_type="move", log_action="move", log_params=["a"], length=None, revision=None),
    ]
    ingest(db_url, tmp_path, awkward)
    export_dir = tmp_path / "exports"

    result = exports.export_day(conn, export_dir, DAY)

    assert result.rows == 5
    assert result.path == layout.day_path(export_dir, DAY)
    assert layout.exported_days(export_dir) == [DAY]
    recorded = bookkeeping.recorded_export(conn, export_dir, DAY)
    assert recorded is not None
    assert recorded.rows == 5
    assert recorded.verified_at is not None
    assert recorded.max_received_at == result.max_received_at
    # No temporary file is left beside the export.
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["part-0.parquet"]

    # Every typed value is the one PostgreSQL holds, in (event_time, event_id) order.
    columns = sql.SQL(", ").join(map(sql.Identifier, (*day_rows.TYPED_COLUMNS, "raw")))
    expected = conn.execute(
        sql.SQL("SELECT {} FROM recent_changes ORDER BY event_time, event_id").format(columns)
    ).fetchall()
    table = pq.read_table(result.path)
    assert table.schema == day_rows.TYPED_SCHEMA
    got = table.to_pylist()
    for row, want in zip(got, expected, strict=True):
        want_typed = dict(zip(day_rows.TYPED_COLUMNS, want[:-1], strict=True))
        want_typed["event_id"] = str(want_typed["event_id"])
        assert row == want_typed
    raw = pq.read_table(result.raw_path).to_pylist() if result.raw_path else []
    assert [json.loads(r["raw"]) for r in raw] == [want[-1] for want in expected]

    # DuckDB and Polars read the dataset through the layout's glob with the same count.
    glob = layout.dataset_glob(export_dir)
    with duckdb.connect() as duck:
        query = "SELECT count(*), min(date) FROM read_parquet(?, hive_partitioning = true)"
        assert duck.execute(query, [glob]).fetchone() == (5, DAY)
    assert pl.scan_parquet(glob, hive_partitioning=True).select(pl.len()).collect().item() == 5


def test_re_export_gives_identical_bytes(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, [event(title=f"Page {n}", user=f"U{n % 3}") for n in range(50)])
    export_dir = tmp_path / "exports"
    first = exports.export_day(conn, export_dir, DAY)
    typed, raw = first.path.read_bytes(), first.raw_path.read_bytes() if first.raw_path else b""
    second = exports.export_day(conn, export_dir, DAY)
    assert second.path.read_bytes() == typed
    assert second.raw_path is not None
    assert second.raw_path.read_bytes() == raw


def test_a_day_without_rows_exports_an_empty_file(conn: psycopg.Connection, tmp_path: Path) -> None:
    result = exports.export_day(conn, tmp_path, DAY)
    assert result.rows == 0
    assert pq.read_table(result.path).num_rows == 0


def test_an_export_never_loses_rows(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, [event(), event()])
    exports.export_day(conn, tmp_path, DAY)
    before = layout.day_path(tmp_path, DAY).read_bytes()
    conn.execute("DELETE FROM recent_changes WHERE event_time >= %s", (datetime(2024, 5, 1, tzinfo=UTC),))
    conn.commit()

    # The rows PostgreSQL no longer holds are kept from the export.
    again = exports.export_day(conn, tmp_path, DAY)

    assert again.rows == 2
    assert layout.day_path(tmp_path, DAY).read_bytes() == before
    assert [p.name for p in layout.day_path(tmp_path, DAY).parent.iterdir()] == ["part-0.parquet"]
    # Without the file to keep them from, the day is not exported again with fewer rows.
    layout.day_path(tmp_path, DAY).unlink()
    with pytest.raises(exports.ExportError, match="already has 2"):
        exports.export_day(conn, tmp_path, DAY)
    assert not layout.day_path(tmp_path, DAY).exists()
    assert list(layout.day_path(tmp_path, DAY).parent.iterdir()) == []


def _keys(path: Path) -> list[tuple[datetime, str]]:
    table = pq.read_table(path, columns=["event_time", "event_id"])
    return list(zip(table["event_time"].to_pylist(), table["event_id"].to_pylist(), strict=True))


def test_late_rows_are_merged_into_an_export_whose_partition_was_dropped(
    db_url: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    noon = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    exported = [event(timestamp=int(noon.timestamp()) + 60 * n, title=f"Old {n}") for n in range(0, 10, 2)]
    ingest(db_url, tmp_path, exported)
    first = exports.export_day(conn, tmp_path, DAY)
    conn.execute("DROP TABLE recent_changes_p20240501")  # as retention does, once the export is verified
    conn.commit()
    # Late rows sort before, between, at the same second as, and after the exported ones; one of them
    # is an event the export already holds (a replay), which must not be counted twice.
    late = [event(timestamp=int(noon.timestamp()) + 60 * n, title=f"Late {n}") for n in (-1, 3, 4, 11)]
    ingest(db_url, tmp_path, [*late, exported[1]])
    # Small read batches, so that late rows fall into different chunks of the old file.
    monkeypatch.setattr(exports, "_MERGE_BATCH_ROWS", 2)

    merged = exports.export_day(conn, tmp_path, DAY)

    assert merged.rows == 9 == day_files.parquet_rows(merged.path)
    keys = _keys(merged.path)
    assert keys == sorted(keys)
    assert {event_id for _, event_id in keys} == {e["meta"]["id"] for e in [*exported, *late]}
    assert merged.raw_path is not None
    assert _keys(merged.raw_path) == keys
    raw = pq.read_table(merged.raw_path)["raw"].to_pylist()
    assert [json.loads(text)["meta"]["id"] for text in raw] == [event_id for _, event_id in keys]
    typed = pq.read_table(merged.path)
    assert typed.schema == day_rows.TYPED_SCHEMA
    assert [t for t in typed["title"].to_pylist() if t.startswith("Old")] == [
        f"Old {n}" for n in (0, 2, 4, 6, 8)
    ]
    recorded = bookkeeping.recorded_export(conn, tmp_path, DAY)
    assert recorded is not None
    assert recorded.rows == 9
    assert first.max_received_at is not None
    assert recorded.max_received_at is not None
    assert recorded.max_received_at > first.max_received_at
    # The same rows again give the same bytes.
    typed_bytes, raw_bytes = merged.path.read_bytes(), merged.raw_path.read_bytes()
    monkeypatch.setattr(exports, "_MERGE_BATCH_ROWS", 3)
    again = exports.export_day(conn, tmp_path, DAY)
    assert again.rows == 9
    assert (again.path.read_bytes(), merged.raw_path.read_bytes()) == (typed_bytes, raw_bytes)


def test_a_merge_refuses_an_export_file_that_does_not_match_its_record(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, [event(), event()])
    exports.export_day(conn, tmp_path, DAY)
    before = layout.day_path(tmp_path, DAY).read_bytes()
    conn.execute("DROP TABLE recent_changes_p20240501")
    conn.execute("UPDATE day_exports SET rows = 3")
    conn.commit()
    ingest(db_url, tmp_path, [event()])

    with pytest.raises(exports.ExportError, match="holds 2 rows, 3 recorded"):
        exports.export_day(conn, tmp_path, DAY)
    assert layout.day_path(tmp_path, DAY).read_bytes() == before


def test_export_needs_a_connection_outside_a_transaction(conn: psycopg.Connection, tmp_path: Path) -> None:
    conn.execute("SELECT 1")
    with pytest.raises(day_rows.TransactionInProgress, match="not inside a transaction"):
        exports.export_day(conn, tmp_path, DAY)


def test_the_day_stream_counts_what_postgresql_sent(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, [event(title=f"Page {n}") for n in range(30)])
    stream = day_rows.DayStream(conn, DAY, include_raw=True)
    with pytest.raises(RuntimeError, match="not all read"):
        _ = stream.snapshot
    with day_rows.day_transaction(conn):
        batches = list(stream)
        counted = day_rows.snapshot_of_day(conn, DAY)
    assert sum(typed.num_rows for typed, _raw in batches) == 30
    assert sum(raw.num_rows for _typed, raw in batches if raw is not None) == 30
    assert stream.snapshot == counted
    assert stream.snapshot.rows == 30
    assert stream.snapshot.max_received_at is not None

    empty = day_rows.DayStream(conn, date(2024, 5, 2))
    with day_rows.day_transaction(conn):
        assert list(empty) == []
    assert empty.snapshot == day_rows.DaySnapshot(rows=0, max_received_at=None)


def test_the_day_is_read_in_key_order_without_a_sort(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """The rows stream from the primary key as soon as the read starts, not after a sort of the day."""
    ingest(db_url, tmp_path, [event(title=f"Page {n}") for n in range(30)])
    with day_rows.day_transaction(conn):
        # Costs under which the planner would rather scan the table and sort it (as for a big day).
        conn.execute("SET LOCAL random_page_cost = 1000")
        for setting in day_rows.READ_SETTINGS:
            conn.execute(setting)
        select = day_rows._select(DAY, include_raw=True).as_string(conn)
        query = select.removeprefix("COPY (").removesuffix(") TO STDOUT (FORMAT CSV)")
        plan = "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + query).fetchall())
    assert "Index Scan" in plan, plan
    assert "Sort" not in plan, plan


def test_row_groups_do_not_depend_on_how_the_rows_were_batched(tmp_path: Path) -> None:
    schema = day_rows.RAW_SCHEMA
    rows = pa.table(
        {
            "event_time": pa.array(
                [datetime(2024, 5, 1, 0, n // 60, n % 60, tzinfo=UTC) for n in range(1000)],
                pa.timestamp("us", tz="UTC"),
            ),
            "event_id": [str(uuid.UUID(int=n)) for n in range(1000)],
            "raw": [json.dumps({"n": n, "title": "x" * (n % 50)}) for n in range(1000)],
        },
        schema=schema,
    )

    def written(sizes: list[int], name: str) -> tuple[bytes, int]:
        writer = day_files.DayFileWriter(tmp_path / name, schema, row_group_rows=128)
        offset = 0
        for size in sizes:
            for batch in rows.slice(offset, size).to_batches():
                writer.write(batch)
            offset += size
        writer.close()
        return writer.temporary.read_bytes(), pq.ParquetFile(writer.temporary).metadata.num_row_groups

    whole, groups = written([1000], "a.parquet")
    assert groups == 8  # 7 full groups of 128 rows and the 104 left
    assert written([1, 127, 300, 7, 565], "b.parquet") == (whole, groups)
    assert written([100] * 10, "c.parquet") == (whole, groups)


def test_a_row_group_that_fails_to_encode_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = day_files.DayFileWriter(tmp_path / "day.parquet", day_rows.RAW_SCHEMA, row_group_rows=2)

    def refuse(_table: Any, **_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer._writer, "write_table", refuse)
    batch = pa.record_batch(
        [
            pa.array([datetime(2024, 5, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
            pa.array(["a", "b"]),
            pa.array(["{}", "{}"]),
        ],
        schema=day_rows.RAW_SCHEMA,
    )
    writer.write(batch)  # handed to the encoder thread
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    writer.discard()
    assert not writer.temporary.exists()
