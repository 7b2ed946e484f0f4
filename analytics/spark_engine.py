"""The figures of many UTC days at once on Apache Spark: the same figures as `aggregates`, by day and wiki.

The definitions are those of `aggregates` (and `analytics/README.md`): the same edit types, top-N
size, tie-break order, column names and anonymous-editor pattern, here as Spark column expressions
over the Parquet files of the days. The files are read once (cached), and every figure of every day
is computed grouped by `(day, wiki)`; the small results are collected into the frames `rollup`
writes. The session is built by the caller (`spark_session`) and passed in; the files are the staged
days' (`rollup.staged_day`), at the paths `layout` gives: this module builds none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import polars as pl
from pyspark import SparkContext
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from analytics import aggregates
from analytics.rollup import DayFigures
from teston.core import editors
from teston.core.schema import DAILY_FIGURES

log = logging.getLogger(__name__)

# The driver JVM's default heap: in local mode it also runs the tasks, and a 1M-event day's figures
# did not fit in 512 MiB (BENCHMARKS.md, "Figure 12").
DRIVER_MEMORY = "2g"
# Java's `$` also matches before a final line break; `\z` is the end of the text, as `$` is in Polars.
ANONYMOUS_USER_PATTERN = editors.ANONYMOUS_USER_PATTERN.removesuffix("$") + r"\z"

# The types of the frames `aggregates` gives, so that both engines' frames compare equal.
_STATS_SCHEMA = pl.Schema(
    [
        ("day", pl.Date),
        ("wiki", pl.String),
        *((name, pl.Int64) for name in DAILY_FIGURES),
        ("hourly_changes", pl.List(pl.Int64)),
    ]
)
_TOP_PAGE_SCHEMA = pl.Schema(
    zip(
        aggregates.TOP_PAGE_COLUMNS,
        (pl.Date, pl.String, pl.Int16, pl.Int32, pl.String, pl.Int64),
        strict=True,
    )
)
_TOP_EDITOR_SCHEMA = pl.Schema(
    zip(
        aggregates.TOP_EDITOR_COLUMNS,
        (pl.Date, pl.String, pl.Int16, pl.String, pl.Boolean, pl.Int64),
        strict=True,
    )
)


@contextmanager
def spark_session(
    master: str,
    *,
    app_name: str = "teston-rollup",
    driver_memory: str = DRIVER_MEMORY,
    config: Mapping[str, str] | None = None,
) -> Iterator[SparkSession]:
    """A session on `master` (`local[2]`, `spark://host:7077`); stopped, with its driver JVM, after use.

    `driver_memory`: the driver JVM's heap; in local mode the tasks run in it too. `config`: further
    Spark properties (e.g. `spark.executor.memory` for a small cluster), over the ones set here. A
    session already running on `master` in this process (a notebook's) is used and left running.
    """
    running = SparkSession.getActiveSession()
    if running is not None and running.sparkContext.master != master:
        raise ValueError(f"a Spark session on {running.sparkContext.master} is running, not on {master}")
    # The driver listens on loopback unless SPARK_LOCAL_IP names an address a remote cluster's
    # executors can reach: a machine's own host name may not resolve to an address it listens on.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    properties = {
        "spark.sql.session.timeZone": "UTC",  # else days and hours follow the JVM's zone
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.memory": driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Shuffle partitions stay many (a year has millions of pages per day); adaptive execution
        # merges them into a few for the small groups of a day or two.
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        **(config or {}),
    }
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in properties.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if running is not None:
        yield spark
        return
    try:
        yield spark
    finally:
        spark.stop()
        _stop_driver_jvm()


def _stop_driver_jvm() -> None:
    # PySpark keeps its driver JVM for the life of the Python process; it exits when its stdin closes.
    gateway = SparkContext._gateway
    if gateway is None:
        return
    SparkContext._gateway = None
    SparkContext._jvm = None
    gateway.shutdown()
    process = getattr(gateway, "proc", None)
    if process is not None:
        process.stdin.close()
        process.wait(timeout=60)


def read_days(spark: SparkSession, files: Mapping[date, Path]) -> DataFrame:
    """The rows of the given days, each from its day's Parquet file, with their UTC `day`."""
    rows = spark.read.parquet(*(str(path) for path in files.values()))
    return rows.withColumn("day", F.to_date("event_time")).where(F.col("day").isin(list(files)))


def _is_anonymous(user_name: Column) -> Column:
    return F.coalesce(user_name.rlike(ANONYMOUS_USER_PATTERN), F.lit(False))


def _sum_or_zero(values: Column) -> Column:
    return F.coalesce(F.sum(values), F.lit(0)).cast("long")


def daily_wiki_stats(rows: DataFrame) -> DataFrame:
    """One row per day and wiki with the columns of `daily_wiki_stats` (less `computed_at`)."""
    kind, bot = F.col("type"), F.col("bot")
    is_edit = kind.isin(*aggregates.EDIT_TYPES)
    anonymous = ~bot & _is_anonymous(F.col("user_name"))
    # Size change of an edit or page creation; a creation has no old length and starts from zero.
    delta = F.when(is_edit, F.col("length_new").cast("long") - F.coalesce(F.col("length_old"), F.lit(0)))
    figures = {
        "changes": F.count(F.lit(1)),
        "edits": F.count_if(is_edit),
        "new_pages": F.count_if(kind == "new"),
        "log_actions": F.count_if(kind == "log"),
        "categorize": F.count_if(kind == "categorize"),
        "other_types": F.count_if(~kind.isin(*aggregates.NAMED_TYPES)),
        "bot_changes": F.count_if(bot),
        "anonymous_changes": F.count_if(anonymous),
        "human_changes": F.count_if(~bot & ~anonymous),
        "content_changes": F.count_if(F.col("namespace") == 0),
        "other_namespace_changes": F.count_if(F.coalesce(F.col("namespace") != 0, F.lit(True))),
        "bytes_added": _sum_or_zero(F.when(delta > 0, delta)),
        "bytes_removed": _sum_or_zero(F.when(delta < 0, -delta)),
        "distinct_editors": F.count_distinct("user_name"),
        "distinct_pages": F.count_distinct("title"),
    }
    hour = F.hour("event_time")
    hourly = F.array(*(F.count_if(hour == h).cast("long") for h in range(aggregates.HOURS)))
    stats = rows.groupBy("day", "wiki").agg(
        *(value.cast("long").alias(name) for name, value in figures.items()),
        hourly.alias("hourly_changes"),
    )
    stats = stats.withColumn("net_bytes", F.col("bytes_added") - F.col("bytes_removed"))
    return stats.select("day", "wiki", *DAILY_FIGURES, "hourly_changes")


def _ranked(counts: DataFrame, name: str) -> DataFrame:
    # Most edits first; ties go to the first name in code-point order (Spark compares strings by
    # their UTF-8 bytes, as Polars does), so both engines rank alike.
    order = Window.partitionBy("day", "wiki").orderBy(F.col("changes").desc(), F.col(name).asc())
    ranked = counts.withColumn("rank", F.row_number().over(order))
    return ranked.where(F.col("rank") <= aggregates.TOP_N)


def _edits(rows: DataFrame, name: str) -> DataFrame:
    return rows.where(F.col("type").isin(*aggregates.EDIT_TYPES) & F.col(name).isNotNull())


def top_pages(rows: DataFrame) -> DataFrame:
    """Per day and wiki, the ten most-edited pages (edits and creations), as rows of `daily_top_pages`."""
    counts = (
        _edits(rows, "title")
        .groupBy("day", "wiki", "title")
        .agg(F.count(F.lit(1)).alias("changes"), F.min("namespace").alias("namespace"))
    )
    return _ranked(counts, "title").select(*aggregates.TOP_PAGE_COLUMNS)


def top_editors(rows: DataFrame) -> DataFrame:
    """Per day and wiki, the ten editors with most edits, as rows of `daily_top_editors`."""
    counts = (
        _edits(rows, "user_name")
        .groupBy("day", "wiki", "user_name")
        .agg(F.count(F.lit(1)).alias("changes"), F.coalesce(F.bool_or("bot"), F.lit(False)).alias("bot"))
    )
    return _ranked(counts, "user_name").select(*aggregates.TOP_EDITOR_COLUMNS)


def _collected(result: DataFrame, schema: pl.Schema) -> pl.DataFrame:
    rows = [tuple(row) for row in result.collect()]
    return pl.DataFrame(rows, schema=schema, orient="row")


def figures_of_rows(rows: DataFrame, days: list[date]) -> dict[date, DayFigures]:
    """Every figure of each of `days` from a frame of their rows (`read_days`), sorted as in `aggregates`."""
    rows = rows.cache()
    try:
        stats = _collected(daily_wiki_stats(rows), _STATS_SCHEMA)
        pages = _collected(top_pages(rows), _TOP_PAGE_SCHEMA)
        editors = _collected(top_editors(rows), _TOP_EDITOR_SCHEMA)
    finally:
        rows.unpersist()
    figures = {}
    for day in days:
        of_day = pl.col("day") == day
        figures[day] = DayFigures(
            day=day,
            wiki_stats=stats.filter(of_day).sort("wiki"),
            top_pages=pages.filter(of_day).sort("wiki", "rank"),
            top_editors=editors.filter(of_day).sort("wiki", "rank"),
        )
    return figures


def figures_of_files(spark: SparkSession, files: Mapping[date, Path]) -> dict[date, DayFigures]:
    """Every figure of each day from its Parquet file, the days together in one Spark job."""
    if not files:
        return {}
    return figures_of_rows(read_days(spark, files), sorted(files))
