"""The Spark engine gives exactly the in-process engine's figures: every column of every summary row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from psycopg import sql
from typer.testing import CliRunner

from analytics import bookkeeping, jobs, rollup, spark_engine
from analytics.day_rows import TYPED_SCHEMA
from teston.cli import app
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(DATA.glob("*.jsonl"))
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
SUMMARY_TABLES = ("daily_wiki_stats", "daily_top_pages", "daily_top_editors", "day_rollups")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    with spark_engine.spark_session("local[2]") as session:
        yield session


def summary_tables(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row of the summary tables, in key order."""
    with conn.transaction():
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3").format(sql.Identifier(table))
            ).fetchall()
            for table in SUMMARY_TABLES
        }


def roll_up(
    conn: psycopg.Connection, export_dir: Path, days: list[date], engine: Any = None
) -> jobs.JobResult:
    result = jobs.rollup_job(export_dir, days, now=NOW, engine=engine)(conn)
    assert result.errors == []
    return result


def test_every_capture_gives_the_same_rows_on_both_engines(
    spark: Any, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    for capture in CAPTURES:
        assert ingest_path(db_url, capture).quarantined == 0
    days = bookkeeping.raw_days(conn)
    assert len(days) >= len(CAPTURES)
    export_dir = tmp_path / "exports"

    roll_up(conn, export_dir, days)
    in_process = summary_tables(conn)
    with conn.transaction():
        for table in SUMMARY_TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    # Every day in one Spark job, from the exports just written (re-exported, byte-identical).
    result = roll_up(conn, export_dir, days, engine=lambda files: spark_engine.figures_of_files(spark, files))
    on_spark = summary_tables(conn)

    assert [d["day"] for d in result.details["days"]] == [day.isoformat() for day in days]
    assert all(in_process[table] for table in SUMMARY_TABLES)
    for table in SUMMARY_TABLES:
        assert on_spark[table] == in_process[table], table


def test_today_partial_and_days_without_data_on_both_engines(
    spark: Any, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """A closed day (final), today (partial, from a scratch file) and a day nobody collected, in one job."""
    capture = DATA / "2023-07-29_enwiki_100.jsonl"
    ingest_path(db_url, capture)
    first = json.loads(capture.read_text(encoding="utf-8").splitlines()[0])
    today = [
        first
        | {"meta": first["meta"] | {"id": str(uuid.uuid4())}, "timestamp": int(NOW.timestamp()) - 60 * n}
        for n in range(3)
    ]
    (tmp_path / "today.jsonl").write_text("".join(json.dumps(e) + "\n" for e in today), encoding="utf-8")
    assert ingest_path(db_url, tmp_path / "today.jsonl").ingested == 3
    days = [date(2023, 7, 28), date(2023, 7, 29), NOW.date()]

    in_process = roll_up(conn, tmp_path / "in-process", days)
    in_process_rows = summary_tables(conn)
    with conn.transaction():
        for table in SUMMARY_TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    on_spark = roll_up(
        conn, tmp_path / "spark", days, engine=lambda f: spark_engine.figures_of_files(spark, f)
    )

    assert on_spark.details["no_data"] == in_process.details["no_data"] == ["2023-07-28"]
    statuses = [(d["day"], d["status"], d["events"]) for d in on_spark.details["days"]]
    assert statuses == [("2023-07-29", "final", 100), (NOW.date().isoformat(), "partial", 3)]
    assert summary_tables(conn) == in_process_rows


def _frames(figures: rollup.DayFigures) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return figures.wiki_stats, figures.top_pages, figures.top_editors


def _row(moment: datetime, wiki: str, kind: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TYPED_SCHEMA.names)
    row |= {
        "event_time": moment,
        "event_id": f"{moment.isoformat()}-{fields.get('title')}-{fields.get('user_name')}",
        "wiki": wiki,
        "server_name": f"{wiki}.example",
        "project": "wikipedia",
        "type": kind,
        "bot": False,
        "received_at": moment,
    }
    return row | fields


def test_edge_cases_give_the_same_frames_on_both_engines(spark: Any, tmp_path: Path) -> None:
    """Names the anonymous pattern must tell apart, null fields, ties, and an hour at each end of the day."""
    day = date(2025, 5, 3)
    start = datetime(2025, 5, 3, tzinfo=UTC)
    late = start + timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)
    names = ["1.2.3.4", "1.2.3.4\n", "::1", "2001:db8::1%eth0", "~2025-12345-67", "~2025-1\nx", "256.1.1.1"]
    names += ["Ünïcode", "Zed", "alice", "Alice", None]
    rows = []
    for index, name in enumerate(names):
        for kind in ("edit", "new", "log", "categorize", "142"):
            rows.append(
                _row(
                    start + timedelta(hours=index),
                    "enwiki" if index % 2 else "dewiki",
                    kind,
                    user_name=name,
                    title=None if index == 3 else f"Page {index % 3}",
                    namespace=None if index == 4 else index % 2,
                    length_old=None if kind == "new" else 100,
                    length_new=None if index == 5 else 90 + index * 3,
                    bot=index % 4 == 0,
                )
            )
    rows.append(_row(late, "enwiki", "edit", user_name="Zed", title="Page 1", length_new=5))
    path = tmp_path / "day.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=TYPED_SCHEMA), path)

    on_spark = spark_engine.figures_of_files(spark, {day: path})[day]
    in_process = rollup.figures_of_files({day: path})[day]

    for spark_frame, frame in zip(_frames(on_spark), _frames(in_process), strict=True):
        assert frame.height > 0
        assert_frame_equal(spark_frame, frame)
    assert on_spark.wiki_stats["hourly_changes"].to_list()[1][23] == 1


def test_rollup_command_on_spark(
    spark: Any, db_url: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`teston rollup --all --engine spark` (on the module's session: it uses a running one and leaves it)."""
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    ingest_path(db_url, DATA / "2025-05-03_sample_144.jsonl")
    days = bookkeeping.raw_days(conn)
    roll_up(conn, tmp_path / "in-process", days)
    in_process = summary_tables(conn)
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("ROLLUP_ENGINE", "duckdb")

    done = CliRunner().invoke(app, ["rollup", "--all", "--engine", "spark"])

    assert done.exit_code == 0, done.output
    assert f"{len(days)} of {len(days)} days rolled up" in done.output
    assert spark.range(2).count() == 2  # still running
    on_spark = summary_tables(conn)
    for table in ("daily_wiki_stats", "daily_top_pages", "daily_top_editors"):
        # Only `computed_at` differs: the run is now, not NOW.
        drop = -1 if table == "daily_wiki_stats" else None
        assert [row[:drop] for row in on_spark[table]] == [row[:drop] for row in in_process[table]], table


def test_a_session_on_another_master_is_refused(spark: Any) -> None:
    with pytest.raises(ValueError, match="local\\[2\\] is running"), spark_engine.spark_session("local[1]"):
        pass
