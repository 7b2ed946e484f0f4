"""The bot's reads and writes: newest changes, a day's summary rows, and language defaults.

Each function takes an open async connection and runs one statement. The newest changes, what stands in
for them when a wiki shows none, and a day's summary rows are read as statements of their own
(`fetch_alone`, on an idle connection); for the others the caller owns the transaction. `!stats` reads
only the summary tables, never `recent_changes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from bot.answers import Change, DayFigures, DayRollup, TopPage
from teston.core.schema import NOT_BOTS_CONDITION, NOT_CATEGORIZE_CONDITION
from teston.core.statuses import DayStatus

# The columns read are the fields of the answers built from them (`Change(**row)`, `DayFigures(**row)`).
_CHANGE_COLUMNS = tuple(field.name for field in fields(Change))
_FIGURE_COLUMNS = tuple(field.name for field in fields(DayFigures))


def latest_changes_query(*, include_bots: bool, include_categorize: bool) -> sql.Composed:
    """The newest-first query for one wiki; filters are spelled out, not parameters, so the planner
    sees them and walks a (wiki, event_time DESC) index of each day's partition newest day first: with
    both filters, the partial index of just the rows they keep (its condition is theirs, joined by AND:
    `RECENT_EDITS_CONDITION` in `teston.core.schema`), so a wiki of bots' changes finds its few
    people's edits without reading the rest."""
    conditions = [sql.SQL("wiki = %(wiki)s")]
    if not include_bots:
        conditions.append(sql.SQL(NOT_BOTS_CONDITION))
    if not include_categorize:
        conditions.append(sql.SQL(NOT_CATEGORIZE_CONDITION))
    return sql.SQL(
        "SELECT {columns} FROM recent_changes WHERE {conditions} "
        # rcid orders changes made within the same second as the wiki recorded them.
        "ORDER BY event_time DESC, rcid DESC NULLS LAST LIMIT %(limit)s"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, _CHANGE_COLUMNS)),
        conditions=sql.SQL(" AND ").join(conditions),
    )


async def latest_changes(
    conn: AsyncConnection[Any],
    wiki: str,
    limit: int,
    *,
    include_bots: bool,
    include_categorize: bool,
) -> list[Change]:
    """The `limit` newest changes of `wiki` (a database name such as `enwiki`), newest first; a statement
    of its own (`fetch_alone`)."""
    query = latest_changes_query(include_bots=include_bots, include_categorize=include_categorize)
    rows = await fetch_alone(conn, query, {"wiki": wiki, "limit": limit})
    return [Change(**row) for row in rows]


async def fetch_alone(
    conn: AsyncConnection[Any], query: sql.SQL | sql.Composed, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows of one read sent as a statement of its own (autocommit): one round trip.

    A bot under load serves a kept answer per turn of its event loop, and each wait of a read on the
    network lasts a turn of every command ready before it: a bare statement waits three turns, where
    BEGIN, `SET LOCAL`, the query and COMMIT one at a time wait twelve and psycopg's pipeline mode six
    (BENCHMARKS.md, figure 11). Its time limit is the connection's `statement_timeout`, which the bot's
    pool sets (`teston.cli.wiring.bot_pool`); psycopg prepares the statement once it is used often.
    `conn` is idle, and is left idle and out of autocommit.
    """
    await conn.set_autocommit(True)
    try:
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchall()
    finally:
        await conn.set_autocommit(False)


# When a wiki shows no change: the newest day the summary tables counted any (kept after the raw rows
# are dropped), and how many of its stored changes there are, counted no further than `at_most` (the
# ones a filter left out, when every stored change is one of those). One statement, one round trip.
_NOTHING_SHOWN = sql.SQL(
    """
    SELECT (SELECT max(day) FROM daily_wiki_stats WHERE wiki = %(wiki)s AND changes > 0) AS newest_day,
        (SELECT count(*) FROM (SELECT 1 FROM recent_changes WHERE wiki = %(wiki)s LIMIT %(at_most)s)
         AS stored) AS stored
    """
)


async def nothing_shown(conn: AsyncConnection[Any], wiki: str, *, at_most: int) -> tuple[date | None, int]:
    """The newest day counted for `wiki` and its stored changes up to `at_most` (0: not counted); a
    statement of its own (`fetch_alone`)."""
    [row] = await fetch_alone(conn, _NOTHING_SHOWN, {"wiki": wiki, "at_most": at_most})
    return row["newest_day"], int(row["stored"])


@dataclass(frozen=True, slots=True)
class DayReading:
    """What the summary tables say of one wiki's day: everything `!stats` may show."""

    rollup: DayRollup | None
    figures: DayFigures | None
    top_pages: list[TopPage]
    has_arrivals: bool


# One statement, one row: the day's roll-up, the wiki's figures (NULL columns when it has no row), its
# top pages as a JSON array, and whether ingestion stored any change of the day (its bookkeeping row).
# Each part is a primary-key lookup; asked separately they cost four round trips.
_READ_DAY = sql.SQL(
    """
    SELECT r.status, r.incomplete, r.computed_at AS rolled_up_at,
        EXISTS (SELECT 1 FROM day_arrivals WHERE day = %(day)s) AS has_arrivals,
        (SELECT coalesce(json_agg(json_build_array(p.rank, p.namespace, p.title, p.changes) ORDER BY p.rank),
                         '[]')
         FROM (SELECT rank, namespace, title, changes FROM daily_top_pages
               WHERE day = %(day)s AND wiki = %(wiki)s ORDER BY rank LIMIT %(pages)s) AS p) AS top_pages,
        s.day IS NOT NULL AS has_figures, {figures}
    FROM (SELECT) AS one
    LEFT JOIN day_rollups r ON r.day = %(day)s
    LEFT JOIN daily_wiki_stats s ON s.day = %(day)s AND s.wiki = %(wiki)s
    """
).format(figures=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in _FIGURE_COLUMNS))


async def read_day(conn: AsyncConnection[Any], wiki: str, day: date, *, pages: int) -> DayReading:
    """The day's roll-up, `wiki`'s figures and top `pages` pages, and whether the day has arrivals; a
    statement of its own (`fetch_alone`)."""
    [row] = await fetch_alone(conn, _READ_DAY, {"day": day, "wiki": wiki, "pages": pages})
    return _day_reading(row)


def _day_reading(row: dict[str, Any]) -> DayReading:
    rollup = (
        None
        if row["status"] is None
        else DayRollup(
            status=DayStatus(row["status"]),
            incomplete=bool(row["incomplete"]),
            computed_at=row["rolled_up_at"],
        )
    )
    figures = None
    if row["has_figures"]:
        values = {name: row[name] for name in _FIGURE_COLUMNS}
        values["hourly_changes"] = tuple(int(n) for n in values["hourly_changes"] or ())
        figures = DayFigures(**values)
    return DayReading(
        rollup=rollup,
        figures=figures,
        top_pages=[TopPage(rank=r, namespace=ns, title=t, changes=c) for r, ns, t, c in row["top_pages"]],
        has_arrivals=bool(row["has_arrivals"]),
    )


async def limit_session_statement_time(conn: AsyncConnection[Any], seconds: float) -> None:
    """Make PostgreSQL cancel any statement of this connection that runs longer than `seconds`.

    For a pool's `configure`: the connection is left idle, as it was."""
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    try:
        await conn.execute(sql.SQL("SET statement_timeout = {}").format(_milliseconds(seconds)))
    finally:
        await conn.set_autocommit(autocommit)


async def limit_statement_time(conn: AsyncConnection[Any], seconds: float) -> None:
    """Make PostgreSQL cancel any statement of the current transaction that runs longer than `seconds`."""
    await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(_milliseconds(seconds)))


def _milliseconds(seconds: float) -> sql.Literal:
    return sql.Literal(f"{int(seconds * 1000)}ms")


async def language_defaults(
    conn: AsyncConnection[Any], user_id: int | None, guild_id: int | None
) -> tuple[str | None, str | None]:
    """The database names stored as the user's and the guild's default wiki (None where unset)."""
    cursor = await conn.execute(
        "SELECT (SELECT wiki FROM user_languages WHERE user_id = %s),"
        " (SELECT wiki FROM guild_languages WHERE guild_id = %s)",
        (user_id, guild_id),
    )
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else (None, None)


async def set_user_language(conn: AsyncConnection[Any], user_id: int, wiki: str) -> None:
    await conn.execute(
        "INSERT INTO user_languages (user_id, wiki, updated_at) VALUES (%s, %s, now()) "
        "ON CONFLICT (user_id) DO UPDATE SET wiki = EXCLUDED.wiki, updated_at = EXCLUDED.updated_at",
        (user_id, wiki),
    )


async def set_guild_language(
    conn: AsyncConnection[Any], guild_id: int, wiki: str, set_by: int | None
) -> None:
    await conn.execute(
        "INSERT INTO guild_languages (guild_id, wiki, set_by, updated_at) VALUES (%s, %s, %s, now()) "
        "ON CONFLICT (guild_id) DO UPDATE SET wiki = EXCLUDED.wiki, set_by = EXCLUDED.set_by,"
        " updated_at = EXCLUDED.updated_at",
        (guild_id, wiki, set_by),
    )
