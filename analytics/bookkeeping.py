"""What the database records about each day's export and roll-up, and the days the jobs must work on.

`day_exports` (a day's verified Parquet export), `day_rollups` (a day's roll-up: partial or final),
`day_arrivals` and `ingest_gaps` are read here; the one write is `record_export`. Roll-ups write their
rows in `rollup.write_figures`.

Transactions: every function here runs its statements in its own `conn.transaction()` block. Called
on a connection outside a transaction, it commits when it returns; called inside the caller's
transaction, the block is a savepoint and the caller's transaction decides. Callers never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg

from analytics import layout
from teston.core.partitions import day_bounds, existing_partition_days
from teston.core.statuses import DayStatus


@dataclass(frozen=True)
class DayExport:
    """A day's Parquet export as `day_exports` records it, with its files where the layout puts them.

    `raw_path` is None when the day was exported without its raw JSON (or that file is gone);
    `bytes` is the typed file's size. Only a verified export (`verified_at` set) is relied on.
    """

    day: date
    path: Path
    raw_path: Path | None
    rows: int
    bytes: int
    max_received_at: datetime | None
    exported_at: datetime
    verified_at: datetime | None


def recorded_export(conn: psycopg.Connection, export_dir: Path, day: date) -> DayExport | None:
    """What `day_exports` says about a day, if it was exported."""
    with conn.transaction():
        row = conn.execute(
            "SELECT rows, bytes, max_received_at, exported_at, verified_at FROM day_exports WHERE day = %s",
            (day,),
        ).fetchone()
    if row is None:
        return None
    rows, size, max_received_at, exported_at, verified_at = row
    raw_path = layout.raw_day_path(export_dir, day)
    return DayExport(
        day=day,
        path=layout.day_path(export_dir, day),
        raw_path=raw_path if raw_path.is_file() else None,
        rows=rows,
        bytes=size,
        max_received_at=max_received_at,
        exported_at=exported_at,
        verified_at=verified_at,
    )


def record_export(
    conn: psycopg.Connection,
    day: date,
    *,
    rows: int,
    size: int,
    max_received_at: datetime | None,
    exported_at: datetime,
) -> None:
    """Record a day's export as verified now (its files are in place and their rows counted)."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO day_exports (day, path, rows, bytes, max_received_at, exported_at, verified_at)
            VALUES (%s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (day) DO UPDATE SET path = excluded.path, rows = excluded.rows,
                bytes = excluded.bytes, max_received_at = excluded.max_received_at,
                exported_at = excluded.exported_at, verified_at = excluded.verified_at
            """,
            (day, layout.relative_day_path(day).as_posix(), rows, size, max_received_at, exported_at),
        )


def exported_rows_gone(conn: psycopg.Connection, export: DayExport) -> bool:
    """Whether PostgreSQL lacks rows the export holds (its partition was dropped since)."""
    start, end = day_bounds(export.day)
    with conn.transaction():
        row = conn.execute(
            "SELECT count(*) FROM recent_changes"
            " WHERE event_time >= %s AND event_time < %s AND received_at <= %s",
            (start, end, export.max_received_at),
        ).fetchone()
    # Every exported row arrived by the export's max_received_at; later rows cannot stand in for them.
    return row is not None and int(row[0]) < export.rows


def day_has_data(conn: psycopg.Connection, day: date) -> bool:
    """Whether TestON holds anything of the day: an arrival, a raw row, or a verified export with rows."""
    start, end = day_bounds(day)
    with conn.transaction():
        row = conn.execute(
            """
            SELECT EXISTS (SELECT 1 FROM day_arrivals WHERE day = %(day)s)
                OR EXISTS (SELECT 1 FROM recent_changes
                           WHERE event_time >= %(start)s AND event_time < %(end)s)
                OR EXISTS (SELECT 1 FROM day_exports
                           WHERE day = %(day)s AND rows > 0 AND verified_at IS NOT NULL)
            """,
            {"day": day, "start": start, "end": end},
        ).fetchone()
    return bool(row and row[0])


def day_has_gap(conn: psycopg.Connection, day: date) -> bool:
    """Whether ingestion recorded a gap overlapping the day: its figures then undercount."""
    start, end = day_bounds(day)
    with conn.transaction():
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM ingest_gaps WHERE gap_from < %s AND gap_to > %s)", (end, start)
        ).fetchone()
    return bool(row and row[0])


def has_partition(conn: psycopg.Connection, day: date) -> bool:
    """Whether the day's raw partition exists (retention drops it once the day's export is verified)."""
    with conn.transaction():
        return day in existing_partition_days(conn)


def is_final(conn: psycopg.Connection, day: date) -> bool:
    """Whether the day's roll-up is final."""
    with conn.transaction():
        row = conn.execute("SELECT status FROM day_rollups WHERE day = %s", (day,)).fetchone()
    return bool(row and row[0] == DayStatus.FINAL)


def newest_final_day(conn: psycopg.Connection) -> date | None:
    """The latest day whose roll-up is final, or None before the first one."""
    with conn.transaction():
        row = conn.execute(
            "SELECT max(day) FROM day_rollups WHERE status = %s", (DayStatus.FINAL,)
        ).fetchone()
    return row[0] if row else None


def raw_days(conn: psycopg.Connection) -> list[date]:
    """Every day that has rows in `recent_changes`."""
    days = []
    with conn.transaction():
        for day in sorted(existing_partition_days(conn)):
            start, end = day_bounds(day)
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM recent_changes WHERE event_time >= %s AND event_time < %s)",
                (start, end),
            ).fetchone()
            if row and row[0]:
                days.append(day)
    return days


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def stale_days(conn: psycopg.Connection) -> list[date]:
    """Final days whose figures are out of date: rows arrived, or a gap was recorded, after the roll-up."""
    with conn.transaction():
        rows = conn.execute(
            """
            SELECT r.day FROM day_rollups r
            JOIN day_arrivals a ON a.day = r.day
            WHERE r.status = %(final)s AND a.last_received_at > coalesce(r.max_received_at, '-infinity')
            UNION
            SELECT r.day FROM day_rollups r
            JOIN ingest_gaps g ON g.gap_from < ((r.day + 1)::timestamp AT TIME ZONE 'UTC')
                AND g.gap_to > (r.day::timestamp AT TIME ZONE 'UTC')
            WHERE r.status = %(final)s AND g.recorded_at > r.computed_at
            ORDER BY 1
            """,
            {"final": DayStatus.FINAL},
        ).fetchall()
    return [row[0] for row in rows]


def days_to_finalize(conn: psycopg.Connection, today: date) -> list[date]:
    """Closed days with data but no up-to-date final roll-up, and closed days whose roll-up needs a look.

    A partial roll-up of a closed day is finalized, or removed if the day has no data; so is a
    zero-event roll-up of a day without arrivals (left by versions that rolled up days nobody collected).
    """
    candidates = set(raw_days(conn))
    with conn.transaction():
        rows = conn.execute(
            """
            SELECT day FROM day_arrivals WHERE day < %(today)s
            UNION SELECT day FROM day_rollups WHERE day < %(today)s AND status = %(partial)s
            """,
            {"today": today, "partial": DayStatus.PARTIAL},
        ).fetchall()
        finals = conn.execute("SELECT day FROM day_rollups WHERE status = %s", (DayStatus.FINAL,)).fetchall()
        empty = conn.execute(
            """
            SELECT r.day FROM day_rollups r
            WHERE r.day < %(today)s AND r.events = 0
                AND NOT EXISTS (SELECT 1 FROM day_arrivals a WHERE a.day = r.day)
            """,
            {"today": today},
        ).fetchall()
    candidates |= {row[0] for row in rows}
    fresh = {row[0] for row in finals} - set(stale_days(conn))
    due = {day for day in candidates if day < today and day not in fresh}
    return sorted(due | {row[0] for row in empty})
