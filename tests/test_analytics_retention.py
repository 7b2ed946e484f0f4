"""Retention drops a raw partition only when its export is verified and still complete."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from analytics import exports, jobs, layout, retention, rollup
from teston.core.partitions import existing_partition_days
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
OLD = date(2023, 7, 29)
OLDER = date(2021, 8, 27)
# RETENTION_DAYS (30) + 1 after the rows arrived (now, when a test replays the captures).
TODAY = datetime.now(UTC).date() + timedelta(days=31)


def setup_days(db_url: str) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    ingest_path(db_url, DATA / "2021-08-27_all-wikis_1950.jsonl")


def drop(conn: psycopg.Connection, export_dir: Path, retention_days: int = 30) -> retention.RetentionOutcome:
    return retention.drop_expired_partitions(conn, export_dir, today=TODAY, retention_days=retention_days)


def partitions(conn: psycopg.Connection) -> set[date]:
    with conn.transaction():
        return existing_partition_days(conn)


def test_unexported_days_are_never_dropped(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    setup_days(db_url)
    outcome = drop(conn, tmp_path)
    assert outcome.dropped == []
    assert outcome.kept == {OLDER: "not exported", OLD: "not exported"}
    assert partitions(conn) == {OLD, OLDER}


def test_a_verified_export_lets_its_partition_go(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    setup_days(db_url)
    exports.export_day(conn, tmp_path, OLD)
    outcome = drop(conn, tmp_path)
    assert outcome.dropped == [OLD]
    assert set(outcome.kept) == {OLDER}
    assert partitions(conn) == {OLDER}
    # The day is still rolled up, now from its export alone.
    result = rollup.rollup_day(conn, tmp_path, OLD)
    assert (result.status, result.events) == ("final", 100)


def test_days_within_retention_are_kept(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    setup_days(db_url)
    exports.export_day(conn, tmp_path, OLD)
    outcome = drop(conn, tmp_path, retention_days=(TODAY - OLD).days)
    assert outcome.dropped == []
    assert partitions(conn) == {OLD, OLDER}


def test_unverified_missing_or_altered_exports_keep_the_partition(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    setup_days(db_url)
    exports.export_day(conn, tmp_path, OLD)
    exports.export_day(conn, tmp_path, OLDER)

    conn.execute("UPDATE day_exports SET verified_at = NULL WHERE day = %s", (OLD,))
    layout.day_path(tmp_path, OLDER).unlink()
    conn.commit()
    outcome = drop(conn, tmp_path)
    assert outcome.dropped == []
    assert outcome.kept[OLD] == "export not verified"
    assert outcome.kept[OLDER].startswith("export file missing")

    exports.export_day(conn, tmp_path, OLD)
    exports.export_day(conn, tmp_path, OLDER)
    conn.execute("UPDATE day_exports SET rows = rows - 1 WHERE day = %s", (OLDER,))
    conn.commit()
    outcome = drop(conn, tmp_path)
    assert outcome.dropped == [OLD]
    assert outcome.kept[OLDER] == "export file holds 1950 rows, 1949 recorded"
    assert partitions(conn) == {OLDER}


def ingest_late_event(db_url: str, directory: Path) -> None:
    """One more event of OLD, as if it arrived late (a new meta.id)."""
    late = json.loads((DATA / "2023-07-29_enwiki_100.jsonl").read_text().splitlines()[0])
    late["meta"]["id"] = str(uuid.uuid4())
    path = directory / "late.jsonl"
    path.write_text(json.dumps(late) + "\n")
    assert ingest_path(db_url, path).ingested == 1


def test_rows_arrived_after_the_export_keep_the_partition(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    setup_days(db_url)
    exports.export_day(conn, tmp_path, OLD)
    ingest_late_event(db_url, tmp_path)

    outcome = drop(conn, tmp_path)

    assert OLD not in outcome.dropped
    assert outcome.kept[OLD] == "PostgreSQL holds 101 rows, the export 100"
    assert OLD in partitions(conn)


def test_a_re_created_partition_goes_once_its_late_rows_are_in_the_export(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    setup_days(db_url)
    exports.export_day(conn, tmp_path, OLD)
    assert drop(conn, tmp_path).dropped == [OLD]
    ingest_late_event(db_url, tmp_path)

    # The late row is not in the export yet: the re-created partition is its only copy.
    outcome = drop(conn, tmp_path)
    assert outcome.kept[OLD] == "PostgreSQL holds 1 rows that are not in the export"
    assert OLD in partitions(conn)

    merged = exports.export_day(conn, tmp_path, OLD)
    assert merged.rows == 101
    outcome = drop(conn, tmp_path)
    assert outcome.dropped == [OLD]
    assert OLD not in partitions(conn)


def test_a_replayed_day_keeps_its_raw_rows_for_the_retention_period_after_the_replay(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    setup_days(db_url)
    arrived = datetime.now(UTC).date()
    # `teston up` right after the replay: the nightly run exports and finalizes the days, then retention.
    night = jobs.nightly(conn, tmp_path, retention_days=30, now=datetime.now(UTC))
    assert night.details["dropped"] == []
    until = (arrived + timedelta(days=30)).isoformat()
    assert night.details["kept"] == {
        day.isoformat(): f"rows arrived on {arrived}: kept until {until}" for day in (OLDER, OLD)
    }
    assert partitions(conn) == {OLD, OLDER}
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM recent_changes").fetchone() == (2050,)

    # On the last day of the period the rows are still kept; the day after, the exported days go.
    on_the_last_day = arrived + timedelta(days=30)
    assert (
        retention.drop_expired_partitions(conn, tmp_path, today=on_the_last_day, retention_days=30).dropped
        == []
    )
    conn.execute("UPDATE day_exports SET verified_at = NULL WHERE day = %s", (OLDER,))
    conn.commit()
    outcome = retention.drop_expired_partitions(
        conn, tmp_path, today=on_the_last_day + timedelta(days=1), retention_days=30
    )
    assert outcome.dropped == [OLD]
    assert outcome.kept == {OLDER: "export not verified"}  # still only after a verified export
    assert partitions(conn) == {OLDER}


def test_cutoff() -> None:
    assert retention.retention_cutoff(TODAY, 30) == TODAY - timedelta(days=30)
