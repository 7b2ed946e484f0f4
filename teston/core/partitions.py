"""Daily range partitions of `recent_changes`: named, created on demand for any day, listed, dropped."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

from teston.core.locks import PARTITION_DDL_KEY
from teston.core.notices import CHANGES_CHANNEL

PARENT_TABLE = "recent_changes"
_NAME = re.compile(r"^recent_changes_p(\d{8})$")


def partition_name(day: date) -> str:
    return f"{PARENT_TABLE}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC half-open interval [start, end) that a day's partition holds."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_of(moment: datetime) -> date:
    """The UTC day an event time belongs to."""
    return moment.astimezone(UTC).date()


def existing_partition_days(conn: psycopg.Connection) -> set[date]:
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = %s
        """,
        (PARENT_TABLE,),
    ).fetchall()
    days = set()
    for (name,) in rows:
        match = _NAME.match(name)
        if match:
            days.add(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date())
    return days


def create_partition_sql(day: date) -> sql.Composed:
    start, end = day_bounds(day)
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(partition_name(day)),
        sql.Identifier(PARENT_TABLE),
        sql.Literal(start.isoformat()),
        sql.Literal(end.isoformat()),
    )


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> set[date]:
    """Create the partitions for `days` that are missing; return the days created.

    Runs in the caller's transaction, so a failed batch leaves no half-made partition behind.
    """
    wanted = set(days)
    if not wanted:
        return set()
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_DDL_KEY,))
    missing = wanted - existing_partition_days(conn)
    for day in sorted(missing):
        conn.execute(create_partition_sql(day))
    return missing


def drop_partition(conn: psycopg.Connection, day: date) -> None:
    """Drop the day's partition; readers that keep what they read hear that any wiki may have changed."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_DDL_KEY,))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition_name(day))))
    conn.execute("SELECT pg_notify(%s, '')", (CHANGES_CHANNEL,))
