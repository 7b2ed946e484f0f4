"""Reads for charts, ranges and top lists: summary rows over several days, and distinct counts from raw rows.

Like `bot.queries`, each function takes an open async connection and the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from bot.answers import DayFigures, DayRollup, TopEntry
from bot.charts import HOURS, DailyCounts
from bot.requests import TopList
from teston.core.statuses import DayStatus

_COUNT_COLUMNS = tuple(f.name for f in fields(DailyCounts))
_FIGURE_COLUMNS = tuple(f.name for f in fields(DayFigures))
# Figures that are counts over changes add up across days; distinct counts and `computed_at` do not.
NOT_SUMMED = frozenset({"distinct_editors", "distinct_pages", "hourly_changes", "computed_at"})


async def daily_counts(
    conn: AsyncConnection[Any], wikis: Sequence[str], first: date, last: date
) -> list[DailyCounts]:
    """The chart columns of `daily_wiki_stats` for `wikis` from `first` to `last`, by day."""
    query = sql.SQL(
        "SELECT {columns} FROM daily_wiki_stats"
        " WHERE wiki = ANY(%s) AND day BETWEEN %s AND %s ORDER BY day, wiki"
    ).format(columns=sql.SQL(", ").join(map(sql.Identifier, _COUNT_COLUMNS)))
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, (list(wikis), first, last))
        rows = await cursor.fetchall()
    return [
        DailyCounts(**{**row, "hourly_changes": tuple(int(n) for n in row["hourly_changes"] or ())})
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class RangeReading:
    days: list[DayFigures]
    partial_days: int
    incomplete_days: int


async def range_days(conn: AsyncConnection[Any], wiki: str, first: date, last: date) -> RangeReading:
    """Each day's figures of `wiki` in the range, and how many days of it are partial or incomplete."""
    query = sql.SQL(
        "SELECT {columns} FROM daily_wiki_stats WHERE wiki = %s AND day BETWEEN %s AND %s ORDER BY day"
    ).format(columns=sql.SQL(", ").join(map(sql.Identifier, _FIGURE_COLUMNS)))
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, (wiki, first, last))
        rows = await cursor.fetchall()
    status = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = %s), count(*) FILTER (WHERE incomplete)"
        " FROM day_rollups WHERE day BETWEEN %s AND %s",
        (DayStatus.PARTIAL, first, last),
    )
    [counts] = await status.fetchall()
    days = [DayFigures(**{**row, "hourly_changes": tuple(row["hourly_changes"] or ())}) for row in rows]
    return RangeReading(days=days, partial_days=int(counts[0]), incomplete_days=int(counts[1]))


def summed(days: Sequence[DayFigures]) -> DayFigures:
    """The additive figures summed over `days`; distinct counts are left 0 (they cannot be summed)."""
    totals = {
        name: sum(getattr(day, name) for day in days) for name in _FIGURE_COLUMNS if name not in NOT_SUMMED
    }
    hourly = tuple(
        sum(day.hourly_changes[h] for day in days if len(day.hourly_changes) == HOURS) for h in range(HOURS)
    )
    newest = max((day.computed_at for day in days), default=datetime(1970, 1, 1, tzinfo=UTC))
    return DayFigures(
        **totals, distinct_editors=0, distinct_pages=0, hourly_changes=hourly, computed_at=newest
    )


@dataclass(frozen=True, slots=True)
class DistinctCounts:
    rows: int
    editors: int
    pages: int


async def distinct_counts(
    conn: AsyncConnection[Any], wiki: str, first: date, last: date, *, seconds: float
) -> DistinctCounts | None:
    """Distinct editors and pages of `wiki` over the raw rows of the range; None if it takes too long.

    Runs in a savepoint with its own statement timeout, so a cancelled count leaves the transaction usable.
    """
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{int(seconds * 1000)}ms"))
            )
            cursor = await conn.execute(
                "SELECT count(*), count(DISTINCT user_name), count(DISTINCT title) FROM recent_changes"
                " WHERE wiki = %s AND event_time >= %s AND event_time < %s",
                (wiki, start, end),
            )
            [row] = await cursor.fetchall()
    except psycopg.errors.QueryCanceled:
        return None
    return DistinctCounts(rows=int(row[0]), editors=int(row[1]), pages=int(row[2]))


async def top_entries(
    conn: AsyncConnection[Any], wiki: str, day: date, kind: TopList
) -> tuple[list[TopEntry], DayRollup | None]:
    """A day's top ten pages or editors of `wiki`, by rank, and the day's roll-up."""
    if kind is TopList.PAGES:
        query = (
            "SELECT rank, title AS name, changes, namespace, false AS bot FROM daily_top_pages"
            " WHERE day = %s AND wiki = %s ORDER BY rank"
        )
    else:
        query = (
            "SELECT rank, user_name AS name, changes, NULL::integer AS namespace, bot FROM daily_top_editors"
            " WHERE day = %s AND wiki = %s ORDER BY rank"
        )
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, (day, wiki))
        entries = [TopEntry(**row) for row in await cursor.fetchall()]
        await cursor.execute("SELECT status, incomplete, computed_at FROM day_rollups WHERE day = %s", (day,))
        found = await cursor.fetchone()
    rollup = (
        None
        if found is None
        else DayRollup(
            status=DayStatus(found["status"]),
            incomplete=bool(found["incomplete"]),
            computed_at=found["computed_at"],
        )
    )
    return entries, rollup
