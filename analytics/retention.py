"""Dropping raw daily partitions once their Parquet export is verified, and never before.

A partition expires `retention_days` after its day and after its rows last arrived (`day_arrivals`):
a day replayed from an old capture keeps its raw rows for the retention period after the replay.
An expired partition is dropped only when all of these hold, checked at the
moment of dropping: `day_exports` has a verified export of the day; the file is where `layout`
says and its footer counts the recorded rows; PostgreSQL still holds exactly that many rows
(nothing arrived since), or fewer and every one of them is in the export (a partition dropped before
and re-created by late rows that were then merged into the export); and no arrival for the day is
newer than the export.

Transactions: as in `bookkeeping`, every function runs its statements in its own `conn.transaction()`
block (a savepoint inside the caller's); each day is checked and dropped in one transaction that holds
a lock on its partition, so the checks and the DROP see the same rows. Callers never commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from analytics import bookkeeping, exports, layout
from analytics.day_files import parquet_rows
from teston.core.partitions import day_bounds, drop_partition, existing_partition_days, partition_name

log = logging.getLogger(__name__)


@dataclass
class RetentionOutcome:
    """Partitions dropped, and those kept past their time with the reason."""

    dropped: list[date] = field(default_factory=list)
    kept: dict[date, str] = field(default_factory=dict)


def retention_cutoff(today: date, retention_days: int) -> date:
    """The oldest day whose raw partition is kept: `retention_days` full days before today."""
    return today - timedelta(days=retention_days)


def arrival_days(conn: psycopg.Connection, days: list[date]) -> dict[date, date]:
    """The UTC day rows of each of `days` last arrived, where `day_arrivals` knows it."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT day, (last_received_at AT TIME ZONE 'UTC')::date FROM day_arrivals WHERE day = ANY(%s)",
            (days,),
        ).fetchall()
    return {row[0]: row[1] for row in rows}


def _reason_to_keep(conn: psycopg.Connection, export_dir: Path, day: date) -> str | None:
    """Why the day's partition must stay, or None; run in the transaction holding the partition's lock."""
    recorded = bookkeeping.recorded_export(conn, export_dir, day)
    if recorded is None:
        return "not exported"
    if recorded.verified_at is None:
        return "export not verified"
    path = layout.day_path(export_dir, day)
    if not path.is_file():
        return f"export file missing: {path}"
    try:
        on_disk = parquet_rows(path)
    except Exception as exc:  # an unreadable file is as good as a missing one
        return f"export file unreadable: {exc}"
    if on_disk != recorded.rows:
        return f"export file holds {on_disk} rows, {recorded.rows} recorded"
    start, end = day_bounds(day)
    [row] = conn.execute(
        """
        SELECT (SELECT count(*) FROM recent_changes WHERE event_time >= %s AND event_time < %s),
               (SELECT last_received_at FROM day_arrivals WHERE day = %s)
        """,
        (start, end, day),
    ).fetchall()
    in_postgres, last_arrival = int(row[0]), row[1]
    if in_postgres > recorded.rows:
        return f"PostgreSQL holds {in_postgres} rows, the export {recorded.rows}"
    if in_postgres < recorded.rows and (missing := exports.rows_not_exported(conn, export_dir, day)):
        return f"PostgreSQL holds {missing} rows that are not in the export"
    exported_up_to = recorded.max_received_at
    if last_arrival is not None and (exported_up_to is None or last_arrival > exported_up_to):
        return "rows arrived after the export"
    return None


def drop_expired_partitions(
    conn: psycopg.Connection, export_dir: Path, *, today: date, retention_days: int
) -> RetentionOutcome:
    """Drop the raw partitions older than the retention period whose export is verified."""
    outcome = RetentionOutcome()
    cutoff = retention_cutoff(today, retention_days)
    with conn.transaction():
        expired = sorted(day for day in existing_partition_days(conn) if day < cutoff)
        arrivals = arrival_days(conn, expired)
    for day in expired:
        arrived = arrivals.get(day)
        if arrived is not None and arrived >= cutoff:
            # A replayed (or late) day keeps its raw rows for the retention period after they came.
            kept_until = arrived + timedelta(days=retention_days)
            outcome.kept[day] = f"rows arrived on {arrived}: kept until {kept_until}"
            log.info("kept raw partition of %s: rows arrived on %s, kept until %s", day, arrived, kept_until)
            continue
        # One transaction per day, so the checks and the DROP see the same rows.
        with conn.transaction():
            # SHARE mode lets readers in but holds back inserts into this day until the drop commits.
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(partition_name(day))))
            reason = _reason_to_keep(conn, export_dir, day)
            if reason is None:
                drop_partition(conn, day)
        if reason is None:
            outcome.dropped.append(day)
            log.info("dropped raw partition of %s (exported and verified)", day)
        else:
            outcome.kept[day] = reason
            log.warning("kept raw partition of %s past retention: %s", day, reason)
    return outcome
