"""A failed export leaves the previous one whole; exports are found through the layout, wherever it is."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from analytics import day_files, exports, layout, retention, rollup
from tests.test_export_parquet import DAY, event, ingest

# Past the retention period of the day and of its rows' arrival (now).
LATER = datetime.now(UTC).date() + timedelta(days=31)


def export_files(export_dir: Path, day: date = DAY) -> dict[Path, bytes]:
    """The day's files and their bytes."""
    paths = [layout.day_path(export_dir, day), layout.raw_day_path(export_dir, day)]
    return {path: path.read_bytes() for path in paths}


def hidden_files(export_dir: Path) -> list[Path]:
    return sorted(path for path in export_dir.rglob(".*") if path.is_file())


def recorded(conn: psycopg.Connection, day: date = DAY) -> tuple[object, ...] | None:
    with conn.transaction():
        return conn.execute(
            "SELECT path, rows, bytes, max_received_at, exported_at, verified_at"
            " FROM day_exports WHERE day = %s",
            (day,),
        ).fetchone()


def failing_on(name: str) -> Callable[[Path, Path], None]:
    """A rename that fails for the target in the dataset named `name`, as a full disk or EIO would."""

    def replace(source: Path, target: Path) -> None:
        if target.parent.parent.name == name:
            raise OSError(28, "No space left on device")
        os.replace(source, target)

    return replace


def corrupting(source: Path, target: Path) -> None:
    """A rename after which the typed file on disk is not what was counted (a lying disk)."""
    os.replace(source, target)
    if target.parent.parent.name == layout.DATASET:
        target.write_bytes(b"PAR1 not a parquet file")


@pytest.fixture
def exported(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> Path:
    """DAY exported with 2 rows, then 1 more row stored in PostgreSQL."""
    ingest(db_url, tmp_path, [event(), event(title="Coffee")])
    export_dir = tmp_path / "exports"
    exports.export_day(conn, export_dir, DAY)
    ingest(db_url, tmp_path, [event(title="Milk")])
    return export_dir


@pytest.mark.parametrize(
    "replace",
    [failing_on(layout.DATASET), failing_on(layout.RAW_DATASET), corrupting],
    ids=["typed-rename-fails", "raw-rename-fails", "typed-file-wrong-after-rename"],
)
def test_a_failed_export_leaves_the_previous_one_whole(
    exported: Path, conn: psycopg.Connection, replace: Callable[[Path, Path], None]
) -> None:
    before, record_before = export_files(exported), recorded(conn)

    with pytest.raises(exports.ExportError, match="2024-05-01"):
        exports.export_day(conn, exported, DAY, replace=replace)

    assert export_files(exported) == before
    assert recorded(conn) == record_before
    assert hidden_files(exported) == []
    # Still verified: the file counts what day_exports records.
    assert day_files.parquet_rows(layout.day_path(exported, DAY)) == 2
    assert day_files.parquet_rows(layout.raw_day_path(exported, DAY)) == 2
    # And the next export, with a working disk, holds all three rows.
    assert exports.export_day(conn, exported, DAY).rows == 3
    assert hidden_files(exported) == []


def test_a_failure_recording_the_export_puts_the_old_files_back(
    exported: Path, conn: psycopg.Connection
) -> None:
    before = export_files(exported)
    with conn.transaction():
        # The record cannot be written (as if the server's disk were full).
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON day_exports FOR EACH ROW EXECUTE FUNCTION refuse()"
        )

    with pytest.raises(psycopg.errors.RaiseException):
        exports.export_day(conn, exported, DAY)

    assert export_files(exported) == before
    assert hidden_files(exported) == []


def test_a_failed_first_export_leaves_no_file(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, [event()])
    export_dir = tmp_path / "exports"

    with pytest.raises(exports.ExportError):
        exports.export_day(conn, export_dir, DAY, replace=failing_on(layout.DATASET))

    assert not layout.day_path(export_dir, DAY).exists()
    assert not layout.raw_day_path(export_dir, DAY).exists()
    assert recorded(conn) is None


def test_exports_are_found_where_the_layout_says_after_the_directory_moved(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, [event(), event(title="Coffee")])
    old_dir = tmp_path / "home-a" / "exports"
    rolled = rollup.rollup_day(conn, old_dir, DAY)
    assert isinstance(rolled, rollup.DayRollup)
    assert rolled.events == 2
    record = recorded(conn)
    assert record is not None
    assert record[0] == "recent_changes/date=2024-05-01/part-0.parquet"
    # Retention drops the raw rows: the export is now the only copy.
    assert retention.drop_expired_partitions(conn, old_dir, today=LATER, retention_days=30).dropped == [DAY]

    new_dir = tmp_path / "home-b" / "exports"
    shutil.move(old_dir, new_dir)

    # Rolled up again from the export at its new place.
    again = rollup.rollup_day(conn, new_dir, DAY)
    assert isinstance(again, rollup.DayRollup)
    assert again.events == 2
    # A late row re-creates the partition; it is merged into the export at its new place.
    ingest(db_url, tmp_path, [event(title="Milk")])
    merged = rollup.rollup_day(conn, new_dir, DAY)
    assert isinstance(merged, rollup.DayRollup)
    assert merged.events == 3
    assert day_files.parquet_rows(layout.day_path(new_dir, DAY)) == 3
    assert day_files.parquet_rows(layout.raw_day_path(new_dir, DAY)) == 3
    assert not old_dir.exists()
    with conn.transaction():
        stats = conn.execute("SELECT sum(changes) FROM daily_wiki_stats WHERE day = %s", (DAY,)).fetchone()
    assert stats == (3,)
    # And the merged export, verified at its new place, lets the partition go again.
    outcome = retention.drop_expired_partitions(conn, new_dir, today=LATER, retention_days=30)
    assert outcome.dropped == [DAY], outcome.kept
