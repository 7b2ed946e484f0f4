"""Reading the summary tables back, for notebooks and scripts: one wiki's day, top editors included.

The bot reads the same rows its own way (`bot.queries.read_day`: asynchronous, one statement, no
editors); the meaning of the answer is the same.

`None` means TestON has no data for that day (never rolled up). A `WikiDay` with `changes == 0` means
collection ran that day and found nothing for that wiki. `status` is `partial` while the day is open
(refreshed every few minutes) and `final` once it is exported and verified; `incomplete` means an
ingestion gap overlaps the day, so the figures undercount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg
from psycopg.rows import dict_row

from teston.schema import DAILY_FIGURES

FIGURES = DAILY_FIGURES


@dataclass(frozen=True)
class TopPage:
    rank: int
    namespace: int | None
    title: str
    edits: int


@dataclass(frozen=True)
class TopEditor:
    rank: int
    user_name: str
    bot: bool
    edits: int


@dataclass(frozen=True)
class WikiDay:
    """One wiki's figures for one UTC day (all zero if the day was collected but the wiki was quiet)."""

    day: date
    wiki: str
    status: str
    incomplete: bool
    computed_at: datetime
    figures: dict[str, int]
    hourly_changes: list[int]
    top_pages: list[TopPage] = field(default_factory=list)
    top_editors: list[TopEditor] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status == "final"


def read_wiki_day(conn: psycopg.Connection, day: date, wiki: str) -> WikiDay | None:
    """A wiki's summary for a day, or None when the day was never rolled up (no data)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rollup = cur.execute(
            "SELECT status, incomplete, computed_at FROM day_rollups WHERE day = %s", (day,)
        ).fetchone()
        if rollup is None:
            return None
        stats = cur.execute(
            f"SELECT {', '.join(FIGURES)}, hourly_changes FROM daily_wiki_stats WHERE day = %s AND wiki = %s",
            (day, wiki),
        ).fetchone()
        pages = cur.execute(
            "SELECT rank, namespace, title, changes FROM daily_top_pages"
            " WHERE day = %s AND wiki = %s ORDER BY rank",
            (day, wiki),
        ).fetchall()
        editors = cur.execute(
            "SELECT rank, user_name, bot, changes FROM daily_top_editors"
            " WHERE day = %s AND wiki = %s ORDER BY rank",
            (day, wiki),
        ).fetchall()
    figures = {name: int(stats[name]) if stats else 0 for name in FIGURES}
    return WikiDay(
        day=day,
        wiki=wiki,
        status=rollup["status"],
        incomplete=rollup["incomplete"],
        computed_at=rollup["computed_at"],
        figures=figures,
        hourly_changes=list(stats["hourly_changes"]) if stats else [0] * 24,
        top_pages=[TopPage(p["rank"], p["namespace"], p["title"], p["changes"]) for p in pages],
        top_editors=[TopEditor(e["rank"], e["user_name"], e["bot"], e["changes"]) for e in editors],
    )
