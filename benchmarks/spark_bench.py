"""Figure 12: the roll-up on the Spark engine against the DuckDB engine, on the same days in the same run.

Seven UTC days of synthetic events (1M each by default) are loaded through the real ingest path. A
Spark session in local mode (`local[2]`, as `SPARK_MASTER` defaults to; session time zone UTC, the
driver on 127.0.0.1) is started once, its start timed apart: that is the JVM's start and the
SparkContext's, which `teston rollup --engine spark` pays once per run. Then, interleaved, per round
and for one day and for all seven:

A. the roll-up job `teston rollup` runs (`analytics.jobs.rollup_job`) with the DuckDB engine: each day
   exported to Parquet, its figures computed in-process, its summary rows replaced.
B. the same job with the Spark engine (`spark_engine.figures_of_files` on the session): every day
   exported first, then the figures of all of them in one Spark job, then the rows written.

Before each job the summary tables are emptied, and after it every column of every summary row of the
days (`daily_wiki_stats`, `daily_top_pages`, `daily_top_editors`, `day_rollups`) is read back; the two
engines' rows must be equal value by value (both jobs are given the same `now`, so even `computed_at`
is). The export is the same code for both engines, so the figures alone are timed too: inside B (the
engine call), and after B with the in-process engine on the files B exported; those frames must equal
the ones the Spark engine returned in B.

One untimed Spark call on the first day comes first: the first job of a new JVM loads and compiles
Spark's classes, and is reported on its own.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from analytics import jobs, layout, rollup
from benchmarks.harness import Context, Figure, human_bytes, ingest_file, ratio, write_lines
from benchmarks.synthetic import EventFactory
from teston.core import database
from teston.core.partitions import day_bounds

FIRST_DAY = date(2025, 5, 10)
MASTER = "local[2]"
SUMMARY_TABLES = ("daily_wiki_stats", "daily_top_pages", "daily_top_editors", "day_rollups")


@dataclass(frozen=True)
class SparkSize:
    events_per_day: int
    days: int
    rounds: int


SPARK_SIZES = {
    "smoke": SparkSize(events_per_day=2_000, days=2, rounds=1),
    "default": SparkSize(events_per_day=1_000_000, days=7, rounds=2),
    "large": SparkSize(events_per_day=1_000_000, days=7, rounds=2),
}


class ResultsDiffer(RuntimeError):
    """The two engines' summary rows (or figures) are not equal."""


@dataclass
class TimedEngine:
    """A figures engine that adds up the seconds spent in it."""

    engine: rollup.FiguresEngine
    seconds: float = 0.0
    figures: dict[date, rollup.DayFigures] | None = None  # the last call's

    def __call__(self, files: Mapping[date, Path]) -> dict[date, rollup.DayFigures]:
        started = time.perf_counter()
        try:
            self.figures = self.engine(files)
            return self.figures
        finally:
            self.seconds += time.perf_counter() - started


def summary_rows(conn: psycopg.Connection, days: list[date]) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every summary row of `days`, in key order."""
    with conn.transaction():
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} WHERE day = ANY(%s) ORDER BY 1, 2, 3").format(
                    sql.Identifier(table)
                ),
                (days,),
            ).fetchall()
            for table in SUMMARY_TABLES
        }


def empty_summary_tables(conn: psycopg.Connection) -> None:
    with conn.transaction():
        for table in SUMMARY_TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


def first_difference(
    duckdb: Mapping[str, list[tuple[Any, ...]]], spark: Mapping[str, list[tuple[Any, ...]]]
) -> str | None:
    """Where two sets of summary rows first differ, or None if they are equal value by value."""
    for table in SUMMARY_TABLES:
        ours, theirs = duckdb[table], spark[table]
        if not ours:
            return f"{table}: no rows"
        for index, (row, other) in enumerate(zip(ours, theirs, strict=False)):
            if row != other:
                return f"{table} row {index}: DuckDB {row!r}, Spark {other!r}"
        if len(ours) != len(theirs):
            return f"{table}: {len(ours)} rows with DuckDB, {len(theirs)} with Spark"
    return None


def frames_difference(
    duckdb: Mapping[date, rollup.DayFigures], spark: Mapping[date, rollup.DayFigures]
) -> str | None:
    """Where two engines' figures of the same days first differ, or None if every frame is equal."""
    if sorted(duckdb) != sorted(spark):
        return f"days {sorted(duckdb)} with DuckDB, {sorted(spark)} with Spark"
    for day, figures in duckdb.items():
        other = spark[day]
        for name in ("wiki_stats", "top_pages", "top_editors"):
            if not getattr(figures, name).equals(getattr(other, name)):
                return f"{day} {name}: the frames differ"
    return None


def roll_up(
    conn: psycopg.Connection,
    export_dir: Path,
    days: list[date],
    now: datetime,
    engine: rollup.FiguresEngine | None,
) -> tuple[float, dict[str, list[tuple[Any, ...]]]]:
    """Empty the summary tables, run the roll-up job on `days`; its seconds and the rows it wrote."""
    empty_summary_tables(conn)
    started = time.perf_counter()
    result = jobs.rollup_job(export_dir, days, now=now, engine=engine)(conn)
    seconds = time.perf_counter() - started
    if result.errors:
        raise RuntimeError(f"the roll-up failed: {'; '.join(result.errors)}")
    rolled = [day["day"] for day in result.details.get("days", [])]
    if rolled != [day.isoformat() for day in days]:
        raise RuntimeError(f"rolled up {rolled}, not {[day.isoformat() for day in days]}")
    return seconds, summary_rows(conn, days)


@contextmanager
def timed_session(master: str) -> Iterator[tuple[Any, dict[str, float]]]:
    """A Spark session; its start and stop seconds (filled in as they happen), the driver JVM checked gone."""
    from pyspark import SparkContext

    from analytics import spark_engine

    times: dict[str, float] = {}
    started = time.perf_counter()
    with spark_engine.spark_session(master, app_name="teston-bench") as spark:
        times["start"] = time.perf_counter() - started
        gateway = SparkContext._gateway
        process = getattr(gateway, "proc", None)
        pid = process.pid if process is not None else None
        try:
            yield spark, times
        finally:
            stopping = time.perf_counter()
    times["stop"] = time.perf_counter() - stopping
    if pid is not None and Path(f"/proc/{pid}").exists():
        raise RuntimeError(f"the driver JVM (pid {pid}) is still running after the session stopped")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _failed(what: str, error: str) -> Figure:
    first_line = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return Figure(
        number=12,
        what=what,
        result=f"failed: {first_line}",
        target="reported (JVM start apart); results identical",
        met=False,
        values={"ratio_one_day": math.nan, "ratio_all_days": math.nan},
        notes=error.strip()[:500],
    )


def load_days(context: Context, url: str, days: list[date], events_per_day: int) -> tuple[int, int]:
    """Generate and ingest each day's events (one day's file at a time); rows stored and JSON bytes."""
    stored = json_bytes = 0
    factory = EventFactory(context.profile, seed=context.seed + 12)
    for day in days:
        start, end = day_bounds(day)
        jsonl = context.workdir / f"spark-{day.isoformat()}.jsonl"
        json_bytes += write_lines(jsonl, factory.events(events_per_day, start, end))
        stored += ingest_file(url, jsonl)
        jsonl.unlink()
        context.log(f"spark: {day} loaded ({stored:,} rows so far)")
    return stored, json_bytes


def run(context: Context) -> list[Figure]:
    size = SPARK_SIZES[context.size.name]
    days = [FIRST_DAY + timedelta(days=n) for n in range(size.days)]
    scopes = {"one day": days[:1], f"{len(days)} days": days}
    what = (
        f"Spark engine ({MASTER}) roll-up of one day and of {len(days)} days, "
        f"{size.events_per_day:,} events each"
    )
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    now = datetime.now(UTC)
    export_dir = context.workdir / "spark-exports"
    job_seconds: dict[tuple[str, str], list[float]] = {}
    figure_seconds: dict[tuple[str, str], list[float]] = {}
    with context.postgres() as server:
        load_started = time.monotonic()
        stored, json_bytes = load_days(context, server.url, days, size.events_per_day)
        context.log(f"spark: {stored:,} rows loaded in {time.monotonic() - load_started:.0f}s")
        try:
            with (
                psycopg.connect(database.in_utc(server.url)) as conn,
                timed_session(MASTER) as (spark, session_times),
            ):
                from analytics import spark_engine

                context.log(f"spark: session started in {session_times['start']:.1f}s")

                def on_spark(files: Mapping[date, Path]) -> dict[date, rollup.DayFigures]:
                    return spark_engine.figures_of_files(spark, files)

                # The first job of the new JVM (classes loaded and compiled), untimed in the rounds.
                roll_up(conn, export_dir, days[:1], now, None)
                files = {day: layout.day_path(export_dir, day) for day in days[:1]}
                started = time.perf_counter()
                on_spark(files)
                first_job = time.perf_counter() - started
                context.log(f"spark: first job (one day's figures) {first_job:.1f}s")
                for round_no in range(size.rounds):
                    for scope, chosen in scopes.items():
                        duck_seconds, duck_rows = roll_up(conn, export_dir, chosen, now, None)
                        engine = TimedEngine(on_spark)
                        spark_seconds, spark_rows = roll_up(conn, export_dir, chosen, now, engine)
                        difference = first_difference(duck_rows, spark_rows)
                        if difference is not None:
                            raise ResultsDiffer(f"{scope}: the summary rows differ: {difference}")
                        # The in-process engine's figures alone, from the files both jobs exported,
                        # against the frames the Spark engine gave in its job.
                        files = {day: layout.day_path(export_dir, day) for day in chosen}
                        started = time.perf_counter()
                        in_process = rollup.figures_of_files(files)
                        duck_figures = time.perf_counter() - started
                        difference = frames_difference(in_process, engine.figures or {})
                        if difference is not None:
                            raise ResultsDiffer(f"{scope}: the figures differ: {difference}")
                        job_seconds.setdefault((scope, "duckdb"), []).append(duck_seconds)
                        job_seconds.setdefault((scope, "spark"), []).append(spark_seconds)
                        figure_seconds.setdefault((scope, "duckdb"), []).append(duck_figures)
                        figure_seconds.setdefault((scope, "spark"), []).append(engine.seconds)
                        context.log(
                            f"spark round {round_no + 1}, {scope}: roll-up DuckDB {duck_seconds:.1f}s, "
                            f"Spark {spark_seconds:.1f}s (figures {duck_figures:.1f}s / "
                            f"{engine.seconds:.1f}s); summary rows identical"
                        )
                exported = sum(layout.day_path(export_dir, day).stat().st_size for day in days)
        except ResultsDiffer as exc:
            context.log(f"spark: RESULTS DIFFER: {exc}")
            return [_failed(what, f"the engines' results are not identical: {exc}")]
        except Exception as exc:
            context.log(f"spark: failed: {type(exc).__name__}: {exc}")
            return [_failed(what, f"{type(exc).__name__}: {exc}")]
        finally:
            shutil.rmtree(export_dir, ignore_errors=True)
    return [
        _figure(
            what,
            scopes,
            stored,
            json_bytes,
            exported,
            session_times,
            first_job,
            job_seconds,
            figure_seconds,
            size,
        )
    ]


def _figure(
    what: str,
    scopes: Mapping[str, list[date]],
    stored: int,
    json_bytes: int,
    exported: int,
    session_times: Mapping[str, float],
    first_job: float,
    job_seconds: Mapping[tuple[str, str], list[float]],
    figure_seconds: Mapping[tuple[str, str], list[float]],
    size: SparkSize,
) -> Figure:
    one, every = scopes
    ratios = {
        scope: ratio(
            [s / d for s, d in zip(job_seconds[scope, "spark"], job_seconds[scope, "duckdb"], strict=True)]
        )
        for scope in scopes
    }
    figure_ratios = {
        scope: ratio(
            [
                s / d
                for s, d in zip(figure_seconds[scope, "spark"], figure_seconds[scope, "duckdb"], strict=True)
            ]
        )
        for scope in scopes
    }

    def times(engine: str) -> str:
        return "; ".join(
            f"{scope} {_median(job_seconds[scope, engine]):.1f} s (figures alone "
            f"{_median(figure_seconds[scope, engine]):.1f} s)"
            for scope in scopes
        )

    values = {
        "events": float(stored),
        "json_bytes": float(json_bytes),
        "typed_parquet_bytes": float(exported),
        "jvm_start_s": session_times["start"],
        "jvm_stop_s": session_times["stop"],
        "first_spark_job_s": first_job,
        "identical": 1.0,
    }
    for key, scope in (("one_day", one), ("all_days", every)):
        values[f"ratio_{key}"] = ratios[scope].median
        values[f"figures_ratio_{key}"] = figure_ratios[scope].median
        for engine in ("duckdb", "spark"):
            values[f"rollup_{key}_{engine}_s"] = _median(job_seconds[scope, engine])
            values[f"figures_{key}_{engine}_s"] = _median(figure_seconds[scope, engine])
    return Figure(
        number=12,
        what=what,
        result=f"{times('spark')}; JVM start {session_times['start']:.1f} s apart; results identical: yes",
        baseline=f"DuckDB engine: {times('duckdb')}",
        ratio="; ".join(
            f"{scope} {ratios[scope]} (figures alone {figure_ratios[scope]})" for scope in scopes
        ),
        target="reported (JVM start apart); results identical",
        met=True,
        values=values,
        notes=(
            f"{size.rounds} rounds A/B per scope; roll-up = `teston rollup`'s job (export + figures + "
            f"summary rows); {stored:,} events, typed Parquet {human_bytes(exported)}; the Spark session's "
            f"start (JVM + SparkContext) {session_times['start']:.1f} s and stop "
            f"{session_times['stop']:.1f} s, its first job (one day's figures, untimed) "
            f"{first_job:.1f} s; every summary row of both engines equal in every round."
        ),
    )
