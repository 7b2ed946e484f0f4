"""Roll a UTC day up into the summary tables: read the day once, compute its figures, replace its rows.

A closed day (before today, UTC) is exported to Parquet first and its figures are computed from that
file, so the export and the summary come from the same PostgreSQL snapshot and the day is read out of
PostgreSQL once. An open day (today) is streamed into a scratch Parquet file instead and marked
`partial`. Either way the summary rows of the day are replaced in one transaction.

A day with no data (no arrivals, no raw rows, no verified export with rows) is never rolled up: no
`day_rollups` row is what tells readers that TestON was not collecting (or has nothing yet) that day,
while a row with zero events would claim it was collecting and saw nothing.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from analytics import aggregates, exports
from teston.partitions import day_bounds, existing_partition_days
from teston.schema import DAILY_FIGURES

log = logging.getLogger(__name__)

PARTIAL = "partial"
FINAL = "final"

_STATS_COLUMNS = ("day", "wiki", *DAILY_FIGURES, "hourly_changes")
# Every table holding a day's figures: replaced or removed together.
_SUMMARY_TABLES = ("daily_wiki_stats", "daily_top_pages", "daily_top_editors")
# Rows per shard of the per-page and per-editor figures: a day of 1M events is computed whole (at
# 4M, whole, they alone took 1.1 GiB).
ROWS_PER_SHARD = 1_000_000


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
    status: str
    events: int
    wikis: int
    incomplete: bool
    max_received_at: datetime | None
    computed_at: datetime
    exported: exports.DayExport | None
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


def figures_of_parquet(path: Path, day: date) -> DayFigures:
    return figures_of_day(pl.scan_parquet(path), day, shards=shards_for(exports.parquet_rows(path)))


def day_has_gap(conn: psycopg.Connection, day: date) -> bool:
    """Whether ingestion recorded a gap overlapping the day: its figures then undercount."""
    start, end = day_bounds(day)
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM ingest_gaps WHERE gap_from < %s AND gap_to > %s)", (end, start)
    ).fetchone()
    return bool(row and row[0])


def write_figures(
    conn: psycopg.Connection,
    figures: DayFigures,
    *,
    status: str,
    incomplete: bool,
    max_received_at: datetime | None,
    computed_at: datetime,
) -> None:
    """Replace the day's summary rows and its `day_rollups` entry, in one transaction."""
    day = figures.day
    stats_rows = [(*row, computed_at) for row in figures.wiki_stats.select(_STATS_COLUMNS).iter_rows()]
    with conn.transaction():
        for table in _SUMMARY_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE day = %s", (day,))
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


def _insert_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows
    )


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


def remove_empty_rollup(conn: psycopg.Connection, day: date) -> bool:
    """Delete a zero-event roll-up of the day, if there is one; whether one was deleted."""
    with conn.transaction():
        removed = conn.execute(
            "DELETE FROM day_rollups WHERE day = %s AND events = 0 RETURNING day", (day,)
        ).fetchone()
        if removed:
            for table in _SUMMARY_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE day = %s", (day,))
    return removed is not None


def is_final(conn: psycopg.Connection, day: date) -> bool:
    with conn.transaction():
        row = conn.execute("SELECT status FROM day_rollups WHERE day = %s", (day,)).fetchone()
    return bool(row and row[0] == FINAL)


def newest_final_day(conn: psycopg.Connection) -> date | None:
    """The latest day whose roll-up is final, or None before the first one."""
    with conn.transaction():
        row = conn.execute("SELECT max(day) FROM day_rollups WHERE status = %s", (FINAL,)).fetchone()
    return row[0] if row else None


def today_utc(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


@dataclass(frozen=True)
class StagedDay:
    """A day with data, its rows in one Parquet file, waiting for its figures to be computed."""

    day: date
    status: str
    path: Path
    rows: int
    max_received_at: datetime | None
    exported: exports.DayExport | None
    started: float


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
    final: bool | None = None,
    scratch_dir: Path | None = None,
) -> Iterator[StagedDay | NoData]:
    """The day's rows in a Parquet file: its export if the day is closed, else a scratch file kept open.

    A day without data is `NoData` (and an empty roll-up of it is removed).
    """
    started = time.perf_counter()
    closed = day < today_utc(computed_at)
    if final and not closed:
        raise ValueError(f"{day} is not over yet (UTC); it cannot be final")
    if not day_has_data(conn, day):
        removed = remove_empty_rollup(conn, day)
        log.info("no data for %s: not rolled up%s", day, " (empty roll-up removed)" if removed else "")
        yield NoData(day, removed_empty_rollup=removed)
        return
    if closed and final is not False:
        kept = _export_without_raw_rows(conn, export_dir, day)
        if kept is not None:
            # Retention dropped the raw rows: the verified export is the day's only copy. Its file
            # is wherever the layout puts it now (EXPORT_DIR may have moved since it was written).
            path = exports.day_path(export_dir, day)
            rows = exports.parquet_rows(path)
            yield StagedDay(day, FINAL, path, rows, kept.max_received_at, None, started)
        else:
            exported = exports.export_day(conn, export_dir, day)
            yield StagedDay(
                day, FINAL, exported.path, exported.rows, exported.max_received_at, exported, started
            )
        return
    with (
        tempfile.TemporaryDirectory(dir=scratch_dir, prefix="teston-rollup-") as directory,
        exports.scratch_day(conn, day, Path(directory)) as written,
    ):
        yield StagedDay(day, PARTIAL, written.path, written.rows, written.max_received_at, None, started)


def record_figures(
    conn: psycopg.Connection, staged: StagedDay, figures: DayFigures, *, computed_at: datetime
) -> DayRollup:
    """Check the figures against the day's rows and replace the day's summary rows with them."""
    day, rows = staged.day, staged.rows
    if figures.events != rows:
        raise RuntimeError(f"{day}: figures count {figures.events} changes but the day has {rows} rows")
    with conn.transaction():
        incomplete = day_has_gap(conn, day)
    write_figures(
        conn,
        figures,
        status=staged.status,
        incomplete=incomplete,
        max_received_at=staged.max_received_at,
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
        max_received_at=staged.max_received_at,
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
    final: bool | None = None,
    scratch_dir: Path | None = None,
) -> DayRollup | NoData:
    """Roll up one day: final (exported, verified) if it is closed, partial if it is today or later.

    `final=False` rolls a closed day up as partial (from PostgreSQL, without exporting it). A day
    without data is left without a roll-up (`NoData`), and an empty roll-up of it is removed.
    """
    computed_at = now or datetime.now(UTC)
    with staged_day(
        conn, export_dir, day, computed_at=computed_at, final=final, scratch_dir=scratch_dir
    ) as staged:
        if isinstance(staged, NoData):
            return staged
        figures = figures_of_parquet(staged.path, day)
        return record_figures(conn, staged, figures, computed_at=computed_at)


def _export_without_raw_rows(
    conn: psycopg.Connection, export_dir: Path, day: date
) -> exports.RecordedExport | None:
    """The verified export of a day whose raw partition no longer exists, if that is the case."""
    with conn.transaction():
        has_partition = day in existing_partition_days(conn)
    if has_partition:
        return None
    recorded = exports.recorded_export(conn, day)
    if recorded is None or recorded.verified_at is None or not exports.day_path(export_dir, day).exists():
        return None
    return recorded


def rollup_days(
    conn: psycopg.Connection,
    export_dir: Path,
    days: Iterable[date],
    *,
    now: datetime | None = None,
    on_day: Callable[[DayRollup | NoData], None] | None = None,
) -> list[DayRollup | NoData]:
    """Roll up several days in order, reporting each as it completes."""
    results: list[DayRollup | NoData] = []
    for day in sorted(set(days)):
        result = rollup_day(conn, export_dir, day, now=now)
        results.append(result)
        if on_day:
            on_day(result)
    return results


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
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def stale_days(conn: psycopg.Connection) -> list[date]:
    """Final days whose figures are out of date: rows arrived, or a gap was recorded, after the roll-up."""
    with conn.transaction():
        rows = conn.execute(
            """
        SELECT r.day FROM day_rollups r
        JOIN day_arrivals a ON a.day = r.day
        WHERE r.status = 'final' AND a.last_received_at > coalesce(r.max_received_at, '-infinity')
        UNION
        SELECT r.day FROM day_rollups r
        JOIN ingest_gaps g ON g.gap_from < ((r.day + 1)::timestamp AT TIME ZONE 'UTC')
            AND g.gap_to > (r.day::timestamp AT TIME ZONE 'UTC')
        WHERE r.status = 'final' AND g.recorded_at > r.computed_at
        ORDER BY 1
        """
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
            UNION SELECT day FROM day_rollups WHERE day < %(today)s AND status = 'partial'
            """,
            {"today": today},
        ).fetchall()
        finals = conn.execute("SELECT day FROM day_rollups WHERE status = 'final'").fetchall()
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
