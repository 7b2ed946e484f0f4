"""The figures of a UTC day, per wiki: pure Polars functions over a frame of that day's rows.

No IO here. Each function takes a (lazy) frame with the columns of `day_rows.TYPED_SCHEMA` (only those
it names are read) and returns a lazy frame shaped like its summary table. Every figure is defined in
`analytics/README.md`; the definitions there and the expressions here change together.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from teston.core.editors import ANONYMOUS_USER_PATTERN
from teston.core.partitions import day_bounds
from teston.core.schema import DAILY_FIGURES

TOP_N = 10
HOURS = 24

EDIT_TYPES = ("edit", "new")
# The columns of `daily_top_pages` and `daily_top_editors`, in the order the frames below give them.
TOP_PAGE_COLUMNS = ("day", "wiki", "rank", "namespace", "title", "changes")
TOP_EDITOR_COLUMNS = ("day", "wiki", "rank", "user_name", "bot", "changes")
NAMED_TYPES = ("edit", "new", "log", "categorize")


def is_anonymous(user_name: pl.Expr) -> pl.Expr:
    """True where a user name is an IPv4/IPv6 address or a temporary account (`~2025-12345-67`)."""
    return user_name.str.contains(ANONYMOUS_USER_PATTERN).fill_null(False)


def rows_of_day(frame: pl.LazyFrame, day: date) -> pl.LazyFrame:
    """The rows whose event time falls on the UTC day `day`."""
    start, end = day_bounds(day)
    return frame.filter((pl.col("event_time") >= start) & (pl.col("event_time") < end))


def _count(condition: pl.Expr) -> pl.Expr:
    return condition.cast(pl.Int64).sum()


def hour_counts(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Per wiki and UTC hour with changes, their count (`wiki`, `hour`, `n`); see `sum_hour_counts`."""
    return rows.group_by("wiki", pl.col("event_time").dt.hour().cast(pl.Int8).alias("hour")).agg(
        pl.len().cast(pl.Int64).alias("n")
    )


def sum_hour_counts(parts: list[pl.LazyFrame]) -> pl.LazyFrame:
    """The `hour_counts` of a day from those of disjoint parts of its rows."""
    return pl.concat(parts).group_by("wiki", "hour").agg(pl.col("n").sum().cast(pl.Int64))


def _hourly_changes(counts: pl.LazyFrame) -> pl.LazyFrame:
    """Per wiki, a list of 24 change counts, one per UTC hour (zeros included), from `hour_counts`."""
    grid = (
        counts.select("wiki")
        .unique()
        .join(pl.LazyFrame({"hour": pl.Series(range(HOURS), dtype=pl.Int8)}), how="cross")
    )
    return (
        grid.join(counts, on=["wiki", "hour"], how="left")
        .sort("wiki", "hour")
        .group_by("wiki", maintain_order=True)
        .agg(pl.col("n").fill_null(0).alias("hourly_changes"))
    )


def in_shard(column: str, shard: int, shards: int) -> pl.Expr:
    """Whether a row's `column` value hashes to `shard` of `shards`: every value lands in exactly one.

    Per-value figures (distinct counts, edits per page or editor) computed shard by shard hold only
    a fraction of a day's distinct values at once, and add up to the figures of the whole day.
    """
    if shards == 1:
        return pl.lit(True)
    return shard_of(column, shards) == shard


def shard_of(column: str, shards: int) -> pl.Expr:
    """The shard (0 to `shards` - 1) of each row's `column` value: a hash, the same in every batch."""
    return pl.col(column).hash(seed=0) % shards


def _distinct(rows: pl.LazyFrame, column: str, alias: str, shard: int = 0, shards: int = 1) -> pl.LazyFrame:
    # unique-then-count streams in far less memory than n_unique inside a wide aggregation.
    return (
        rows.select("wiki", column)
        .drop_nulls()
        .filter(in_shard(column, shard, shards))
        .unique()
        .group_by("wiki")
        .agg(pl.len().cast(pl.Int64).alias(alias))
    )


def distinct_counts(frame: pl.LazyFrame, day: date, *, shard: int = 0, shards: int = 1) -> pl.LazyFrame:
    """Per wiki, `distinct_editors` and `distinct_pages` among the user names and titles of one shard.

    Summed over every shard (`sum_distinct_counts`) they are the day's figures.
    """
    rows = rows_of_day(frame, day)
    return _distinct(rows, "user_name", "distinct_editors", shard, shards).join(
        _distinct(rows, "title", "distinct_pages", shard, shards), on="wiki", how="full", coalesce=True
    )


def distinct_counts_apart(editor_rows: pl.LazyFrame, page_rows: pl.LazyFrame, day: date) -> pl.LazyFrame:
    """`distinct_counts` of one shard whose user names and titles come in separate frames of rows."""
    editors = _distinct(rows_of_day(editor_rows, day), "user_name", "distinct_editors")
    pages = _distinct(rows_of_day(page_rows, day), "title", "distinct_pages")
    return editors.join(pages, on="wiki", how="full", coalesce=True)


def sum_distinct_counts(shards: list[pl.LazyFrame]) -> pl.LazyFrame:
    """The day's distinct counts per wiki from those of every shard (each value counted in one shard)."""
    return (
        pl.concat(shards, how="vertical_relaxed")
        .group_by("wiki")
        .agg(pl.col("distinct_editors", "distinct_pages").fill_null(0).sum().cast(pl.Int64))
    )


# The figures of `wiki_counts`: sums over rows, so a day's are the sums of its parts' (`sum_wiki_counts`).
# The others are derived from them (`net_bytes`) or counted per shard (the distinct counts).
ADDITIVE_FIGURES: tuple[str, ...] = tuple(
    name for name in DAILY_FIGURES if name not in {"net_bytes", "distinct_editors", "distinct_pages"}
)


def wiki_counts(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Per wiki, the `ADDITIVE_FIGURES` of `rows` (rows of one day)."""
    kind = pl.col("type")
    bot = pl.col("bot")
    anonymous = ~bot & is_anonymous(pl.col("user_name"))
    # Size change of an edit or page creation; a creation has no old length and starts from zero.
    delta = pl.when(kind.is_in(EDIT_TYPES)).then(
        pl.col("length_new").cast(pl.Int64) - pl.col("length_old").cast(pl.Int64).fill_null(0)
    )
    return rows.group_by("wiki").agg(
        pl.len().cast(pl.Int64).alias("changes"),
        _count(kind.is_in(EDIT_TYPES)).alias("edits"),
        _count(kind == "new").alias("new_pages"),
        _count(kind == "log").alias("log_actions"),
        _count(kind == "categorize").alias("categorize"),
        _count(~kind.is_in(NAMED_TYPES)).alias("other_types"),
        _count(bot).alias("bot_changes"),
        _count(anonymous).alias("anonymous_changes"),
        _count(~bot & ~anonymous).alias("human_changes"),
        _count(pl.col("namespace") == 0).alias("content_changes"),
        _count((pl.col("namespace") != 0).fill_null(True)).alias("other_namespace_changes"),
        delta.clip(lower_bound=0).sum().cast(pl.Int64).alias("bytes_added"),
        (-delta).clip(lower_bound=0).sum().cast(pl.Int64).alias("bytes_removed"),
    )


def sum_wiki_counts(parts: list[pl.LazyFrame]) -> pl.LazyFrame:
    """The `wiki_counts` of a day from those of disjoint parts of its rows."""
    return pl.concat(parts).group_by("wiki").agg(pl.col(*ADDITIVE_FIGURES).sum().cast(pl.Int64))


def daily_wiki_stats(
    frame: pl.LazyFrame,
    day: date,
    *,
    distinct: pl.LazyFrame | None = None,
    counts: pl.LazyFrame | None = None,
    hours: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per wiki with the columns of `daily_wiki_stats` (less `computed_at`), sorted by wiki.

    What was computed apart is passed in and not computed from `frame` again: `distinct`
    (`sum_distinct_counts`), `counts` (`sum_wiki_counts`) and `hours` (`sum_hour_counts`).
    """
    rows = rows_of_day(frame, day)
    if distinct is None:
        distinct = distinct_counts(frame, day)
    if counts is None:
        counts = wiki_counts(rows)
    if hours is None:
        hours = hour_counts(rows)
    return (
        counts.join(distinct, on="wiki", how="left")
        .join(_hourly_changes(hours), on="wiki", how="left")
        .with_columns(
            (pl.col("bytes_added") - pl.col("bytes_removed")).alias("net_bytes"),
            pl.col("distinct_editors", "distinct_pages").fill_null(0),
            pl.lit(day, dtype=pl.Date).alias("day"),
        )
        .select("day", "wiki", *DAILY_FIGURES, "hourly_changes")
        .sort("wiki")
    )


def _ranked(counts: pl.LazyFrame, tie_breakers: list[str], day: date) -> pl.LazyFrame:
    # Most edits first; ties go to the alphabetically first name, so every run ranks alike.
    return (
        counts.sort(
            ["wiki", "changes", *tie_breakers], descending=[False, True, *[False] * len(tie_breakers)]
        )
        .with_columns((pl.int_range(pl.len()).over("wiki") + 1).alias("rank"))
        # Narrowed to the column's smallint only after the cut: a busy wiki has far more than
        # 32,767 pages or editors in a day.
        .filter(pl.col("rank") <= TOP_N)
        .with_columns(pl.col("rank").cast(pl.Int16))
        .with_columns(pl.lit(day, dtype=pl.Date).alias("day"))
    )


def top_pages(frame: pl.LazyFrame, day: date, *, shard: int = 0, shards: int = 1) -> pl.LazyFrame:
    """Per wiki, the ten most-edited pages (edits and creations), as rows of `daily_top_pages`.

    With `shards`, the ten of the titles in `shard`; `merge_top_pages` ranks the day's ten from those.
    """
    counts = (
        rows_of_day(frame, day)
        .filter(pl.col("type").is_in(EDIT_TYPES) & pl.col("title").is_not_null())
        .filter(in_shard("title", shard, shards))
        .group_by("wiki", "title")
        .agg(pl.len().cast(pl.Int64).alias("changes"), pl.col("namespace").min().alias("namespace"))
    )
    return _ranked(counts, ["title"], day).select(TOP_PAGE_COLUMNS)


def top_editors(frame: pl.LazyFrame, day: date, *, shard: int = 0, shards: int = 1) -> pl.LazyFrame:
    """Per wiki, the ten editors with most edits (edits and creations), as rows of `daily_top_editors`.

    With `shards`, the ten of the user names in `shard`; `merge_top_editors` ranks the day's ten.
    """
    counts = (
        rows_of_day(frame, day)
        .filter(pl.col("type").is_in(EDIT_TYPES) & pl.col("user_name").is_not_null())
        .filter(in_shard("user_name", shard, shards))
        .group_by("wiki", "user_name")
        .agg(pl.len().cast(pl.Int64).alias("changes"), pl.col("bot").any().alias("bot"))
    )
    return _ranked(counts, ["user_name"], day).select(TOP_EDITOR_COLUMNS)


# A page or editor is in one shard with all its edits, so the day's ten are among the shards' tens.
def merge_top_pages(shards: list[pl.LazyFrame], day: date) -> pl.LazyFrame:
    """The day's top pages from the `top_pages` of every shard."""
    candidates = pl.concat(shards).drop("rank", "day")
    return _ranked(candidates, ["title"], day).select(TOP_PAGE_COLUMNS)


def merge_top_editors(shards: list[pl.LazyFrame], day: date) -> pl.LazyFrame:
    """The day's top editors from the `top_editors` of every shard."""
    candidates = pl.concat(shards).drop("rank", "day")
    return _ranked(candidates, ["user_name"], day).select(TOP_EDITOR_COLUMNS)
