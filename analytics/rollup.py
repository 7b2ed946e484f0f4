"""Roll a UTC day up into the summary tables: read the day once, compute its figures, replace its rows.

A closed day (before today, UTC) is exported to Parquet first and its figures are computed from that
file, so the export and the summary come from the same PostgreSQL snapshot and the day is read out of
PostgreSQL once. An open day (today) is streamed into a scratch Parquet file instead and marked
`partial`. Either way the summary rows of the day are replaced in one transaction.

A day with no data (no arrivals, no raw rows, no verified export with rows) is never rolled up: no
`day_rollups` row is what tells readers that TestON was not collecting (or has nothing yet) that day,
while a row with zero events would claim it was collecting and saw nothing.

Which days to roll up, and what is recorded about them, is `bookkeeping`'s; where their files are,
`layout`'s. Transactions: every function that writes (`write_figures`, `remove_empty_rollup`) does so
in its own `conn.transaction()` block, as `bookkeeping`'s functions do; callers never commit.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from analytics import aggregates, bookkeeping, exports, figure_passes
from analytics.bookkeeping import DayExport
from analytics.day_files import parquet_rows
from teston.core.errors import AnalyticsError
from teston.core.notices import ROLLUPS_CHANNEL, day_payload
from teston.core.schema import DAILY_FIGURES
from teston.core.statuses import DayStatus

log = logging.getLogger(__name__)

_STATS_COLUMNS = ("day", "wiki", *DAILY_FIGURES, "hourly_changes")
# Every table holding a day's figures: replaced or removed together.
_SUMMARY_TABLES = ("daily_wiki_stats", "daily_top_pages", "daily_top_editors")
_DELETE_DAY = sql.SQL("DELETE FROM {} WHERE day = %s")
# Rows per shard of the per-page and per-editor figures: a larger day is computed in passes
# (`figure_passes`), a quarter of a million rows' worth of titles and user names at a time, which
# bounds memory whatever the day's size (BENCHMARKS.md, "Figure 3").
ROWS_PER_SHARD = 250_000


class FiguresMismatch(AnalyticsError):
    """A day's computed figures do not count the rows the day has; nothing is written."""


@dataclass(frozen=True)
class DayFigures:
    """Everything the summary tables hold for one day."""

    day: date
    wiki_stats: pl.DataFrame
    top_pages: pl.DataFrame
    top_editors: pl.DataFrame

    @property
    def events(self) -> int:
        return int(self.wiki_stats["changes"].sum()) if self.wiki_stats.height else 0

    @property
    def wikis(self) -> int:
        return self.wiki_stats.height


@dataclass(frozen=True)
class NoData:
    """A day with nothing to roll up: nothing was written for it (see `day_has_data`)."""

    day: date
    # A zero roll-up left from before this rule (it claimed the day was collected) was removed.
    removed_empty_rollup: bool = False


@dataclass(frozen=True)
class DayRollup:
    """The outcome of rolling up one day."""

    day: date
    status: DayStatus
    events: int
    wikis: int
    incomplete: bool
    max_received_at: datetime | None
    computed_at: datetime
    exported: DayExport | None
    seconds: float


def figures_of_day(frame: pl.LazyFrame, day: date, *, shards: int = 1) -> DayFigures:
    """Compute every summary figure of `day` from a frame of its rows.

    `shards` > 1 computes the per-page and per-editor figures (distinct counts, top tens) one hash
    shard of titles and user names at a time: what they hold at once is the distinct values of one
    shard, not of the whole day (the part of a roll-up that grows with the day).
    """
    if shards == 1:
        # The streaming engine keeps memory bounded by the groups, not by the day's rows.
        stats, pages, editors = pl.collect_all(
            [
                aggregates.daily_wiki_stats(frame, day),
                aggregates.top_pages(frame, day),
                aggregates.top_editors(frame, day),
            ],
            engine="streaming",
        )
        return DayFigures(day=day, wiki_stats=stats, top_pages=pages, top_editors=editors)
    distinct: list[pl.LazyFrame] = []
    shard_pages: list[pl.LazyFrame] = []
    shard_editors: list[pl.LazyFrame] = []
    for shard in range(shards):
        counts, pages, editors = pl.collect_all(
            [
                aggregates.distinct_counts(frame, day, shard=shard, shards=shards),
                aggregates.top_pages(frame, day, shard=shard, shards=shards),
                aggregates.top_editors(frame, day, shard=shard, shards=shards),
            ],
            engine="streaming",
        )
        distinct.append(counts.lazy())
        shard_pages.append(pages.lazy())
        shard_editors.append(editors.lazy())
    stats, pages, editors = pl.collect_all(
        [
            aggregates.daily_wiki_stats(frame, day, distinct=aggregates.sum_distinct_counts(distinct)),
            aggregates.merge_top_pages(shard_pages, day),
            aggregates.merge_top_editors(shard_editors, day),
        ],
        engine="streaming",
    )
    return DayFigures(day=day, wiki_stats=stats, top_pages=pages, top_editors=editors)


def shards_for(rows: int) -> int:
    """How many shards the figures of a day of `rows` rows are computed in (see `figures_of_day`)."""
    return max(1, -(-rows // ROWS_PER_SHARD))


def figures_of_parquet(path: Path, day: date, *, scratch_dir: Path | None = None) -> DayFigures:
    """The figures of the day in the Parquet file at `path`; a large day in passes (`figure_passes`)."""
    shards = shards_for(parquet_rows(path))
    if shards == 1:
        return figures_of_day(pl.scan_parquet(path), day)
    stats, pages, editors = figure_passes.figures_in_passes(path, day, shards=shards, scratch_dir=scratch_dir)
    return DayFigures(day=day, wiki_stats=stats, top_pages=pages, top_editors=editors)


def write_figures(
    conn: psycopg.Connection,
    figures: DayFigures,
    *,
    status: DayStatus,
    incomplete: bool,
    max_received_at: datetime | None,
    computed_at: datetime,
) -> None:
    """Replace the day's summary rows and its `day_rollups` entry, in one transaction."""
    day = figures.day
    stats_rows = [(*row, computed_at) for row in figures.wiki_stats.select(_STATS_COLUMNS).iter_rows()]
    with conn.transaction():
        for table in _SUMMARY_TABLES:
            conn.execute(_DELETE_DAY.format(sql.Identifier(table)), (day,))
        with conn.cursor() as cur:
            _insert_rows(cur, "daily_wiki_stats", (*_STATS_COLUMNS, "computed_at"), stats_rows)
            top_pages = figures.top_pages.select(aggregates.TOP_PAGE_COLUMNS).iter_rows()
            _insert_rows(cur, "daily_top_pages", aggregates.TOP_PAGE_COLUMNS, list(top_pages))
            top_editors = figures.top_editors.select(aggregates.TOP_EDITOR_COLUMNS).iter_rows()
            _insert_rows(cur, "daily_top_editors", aggregates.TOP_EDITOR_COLUMNS, list(top_editors))
        conn.execute(
            """
            INSERT INTO day_rollups (day, status, incomplete, events, wikis, max_received_at, computed_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (day) DO UPDATE SET status = excluded.status, incomplete = excluded.incomplete,
                events = excluded.events, wikis = excluded.wikis,
                max_received_at = excluded.max_received_at, computed_at = excluded.computed_at
            """,
            (day, status, incomplete, figures.events, figures.wikis, max_received_at, computed_at),
        )
        _announce(conn, day)


def _insert_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    cur.executemany(query, rows)


def remove_empty_rollup(conn: psycopg.Connection, day: date) -> bool:
    """Delete a zero-event roll-up of the day, if there is one; whether one was deleted."""
    with conn.transaction():
        removed = conn.execute(
            "DELETE FROM day_rollups WHERE day = %s AND events = 0 RETURNING day", (day,)
        ).fetchone()
        if removed:
            for table in _SUMMARY_TABLES:
                conn.execute(_DELETE_DAY.format(sql.Identifier(table)), (day,))
            _announce(conn, day)
    return removed is not None


def _announce(conn: psycopg.Connection, day: date) -> None:
    """Tell readers that keep `!stats` answers (`bot.command_reads`) the day's rows changed, at commit."""
    conn.execute("SELECT pg_notify(%s, %s)", (ROLLUPS_CHANNEL, day_payload(day)))


def today_utc(now: datetime | None = None) -> date:
    """The current UTC day (of `now`, if given)."""
    return (now or datetime.now(UTC)).astimezone(UTC).date()


@dataclass(frozen=True)
class StagedDay:
    """A day with data, its rows in one Parquet file, waiting for its figures to be computed."""

    status: DayStatus
    file: exports.WrittenDay
    # The export written for it, if the day was exported now (not when only its old export is left).
    exported: DayExport | None
    started: float

    @property
    def day(self) -> date:
        return self.file.day


# An engine computes the figures of several days, each from its day's Parquet file.
FiguresEngine = Callable[[Mapping[date, Path]], dict[date, DayFigures]]


def figures_of_files(files: Mapping[date, Path]) -> dict[date, DayFigures]:
    """The in-process engine (Polars' streaming engine over each file in turn): the default."""
    return {day: figures_of_parquet(path, day) for day, path in files.items()}


@contextmanager
def staged_day(
    conn: psycopg.Connection,
    export_dir: Path,
    day: date,
    *,
    computed_at: datetime,
    partial: bool = False,
    scratch_dir: Path | None = None,
) -> Iterator[StagedDay | NoData]:
    """The day's rows in a Parquet file: its export if the day is closed, else a scratch file kept open.

    `partial=True` stages a closed day from PostgreSQL as partial, without exporting it. A day
    without data is `NoData` (and an empty roll-up of it is removed).
    """
    started = time.perf_counter()
    if not bookkeeping.day_has_data(conn, day):
        removed = remove_empty_rollup(conn, day)
        log.info("no data for %s: not rolled up%s", day, " (empty roll-up removed)" if removed else "")
        yield NoData(day, removed_empty_rollup=removed)
        return
    if day < today_utc(computed_at) and not partial:
        kept = _export_without_raw_rows(conn, export_dir, day)
        if kept is not None:
            # Retention dropped the raw rows: the verified export is the day's only copy. Its file
            # is wherever the layout puts it now (EXPORT_DIR may have moved since it was written).
            file = exports.WrittenDay(
                day, kept.path, kept.raw_path, parquet_rows(kept.path), kept.max_received_at
            )
            yield StagedDay(DayStatus.FINAL, file, None, started)
        else:
            exported = exports.export_day(conn, export_dir, day)
            file = exports.WrittenDay(
                day, exported.path, exported.raw_path, exported.rows, exported.max_received_at
            )
            yield StagedDay(DayStatus.FINAL, file, exported, started)
        return
    with (
        tempfile.TemporaryDirectory(dir=scratch_dir, prefix="teston-rollup-") as directory,
        exports.scratch_day(conn, day, Path(directory)) as written,
    ):
        yield StagedDay(DayStatus.PARTIAL, written, None, started)


def record_figures(
    conn: psycopg.Connection, staged: StagedDay, figures: DayFigures, *, computed_at: datetime
) -> DayRollup:
    """Check the figures against the day's rows and replace the day's summary rows with them."""
    day, rows = staged.day, staged.file.rows
    if figures.events != rows:
        raise FiguresMismatch(f"{day}: figures count {figures.events} changes but the day has {rows} rows")
    incomplete = bookkeeping.day_has_gap(conn, day)
    write_figures(
        conn,
        figures,
        status=staged.status,
        incomplete=incomplete,
        max_received_at=staged.file.max_received_at,
        computed_at=computed_at,
    )
    seconds = time.perf_counter() - staged.started
    log.info(
        "rolled up %s (%s): %d events in %d wikis, %.2fs", day, staged.status, rows, figures.wikis, seconds
    )
    return DayRollup(
        day=day,
        status=staged.status,
        events=rows,
        wikis=figures.wikis,
        incomplete=incomplete,
        max_received_at=staged.file.max_received_at,
        computed_at=computed_at,
        exported=staged.exported,
        seconds=seconds,
    )


def rollup_day(
    conn: psycopg.Connection,
    export_dir: Path,
    day: date,
    *,
    now: datetime | None = None,
    partial: bool = False,
    scratch_dir: Path | None = None,
) -> DayRollup | NoData:
    """Roll up one day: final (exported, verified) if it is closed, partial if it is today or later.

    `partial=True` rolls a closed day up as partial (from PostgreSQL, without exporting it). A day
    without data is left without a roll-up (`NoData`), and an empty roll-up of it is removed.
    """
    computed_at = now or datetime.now(UTC)
    with staged_day(
        conn, export_dir, day, computed_at=computed_at, partial=partial, scratch_dir=scratch_dir
    ) as staged:
        if isinstance(staged, NoData):
            return staged
        figures = figures_of_parquet(staged.file.path, day, scratch_dir=scratch_dir)
        return record_figures(conn, staged, figures, computed_at=computed_at)


def _export_without_raw_rows(conn: psycopg.Connection, export_dir: Path, day: date) -> DayExport | None:
    """The verified export of a day whose raw partition no longer exists, if that is the case."""
    if bookkeeping.has_partition(conn, day):
        return None
    recorded = bookkeeping.recorded_export(conn, export_dir, day)
    if recorded is None or recorded.verified_at is None or not recorded.path.exists():
        return None
    return recorded
