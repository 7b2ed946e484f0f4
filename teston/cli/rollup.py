"""`teston rollup`: export and roll up chosen days now, with a table of what each day became.

The roll-up's modules (Arrow, Polars, DuckDB) are imported when the command runs, not with the CLI:
`teston up` and the other long-running commands run their roll-ups in a child process
(`analytics.job_process`) and never load them.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import date
from typing import TYPE_CHECKING

import psycopg
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from teston.cli.common import read_settings
from teston.core import database
from teston.core.settings import Settings
from teston.core.statuses import JobStatus

if TYPE_CHECKING:
    from analytics import rollup

ENGINES = ("duckdb", "spark")


def _parse_day(value: str, option: str, *, today: date) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None
    if day > today:
        raise typer.BadParameter(
            f"{day} is after today ({today}, UTC): only days up to today can be rolled up", param_hint=option
        )
    return day


def _requested_days(day: str | None, first: str | None, last: str | None) -> list[date]:
    """The days `--date D` or `--from D --to D` name, refused if reversed or after today (UTC)."""
    from analytics import bookkeeping, rollup

    today = rollup.today_utc()
    if day is not None:
        return [_parse_day(day, "--date", today=today)]
    if first is None or last is None:
        raise typer.BadParameter("give exactly one of --date D, --from D --to D, or --all")
    start, end = _parse_day(first, "--from", today=today), _parse_day(last, "--to", today=today)
    if start > end:
        raise typer.BadParameter(
            f"--from {start} is after --to {end}; give the first day of the range to --from",
            param_hint="'--from' / '--to'",
        )
    return bookkeeping.days_between(start, end)


def rollup_command(
    day: str | None = typer.Option(None, "--date", help="One UTC day (YYYY-MM-DD)."),
    first: str | None = typer.Option(None, "--from", help="First UTC day of a range."),
    last: str | None = typer.Option(None, "--to", help="Last UTC day of a range (inclusive)."),
    every: bool = typer.Option(False, "--all", help="Every day present in the raw table."),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="duckdb (in-process, each day in turn) or spark (all the days in one job on SPARK_MASTER); "
        "default ROLLUP_ENGINE.",
    ),
) -> None:
    """Export and roll up days into the summary tables (closed days final, today partial)."""
    chosen = sum([day is not None, first is not None or last is not None, every])
    if chosen != 1 or (first is None) != (last is None):
        raise typer.BadParameter("give exactly one of --date D, --from D --to D, or --all")
    if engine not in {None, *ENGINES}:
        raise typer.BadParameter(f"{engine!r} is not one of {', '.join(ENGINES)}", param_hint="--engine")
    requested = None if every else _requested_days(day, first, last)
    settings = read_settings()
    with contextlib.ExitStack() as resources:
        figures_engine = None
        if (engine or settings.analytics.rollup_engine) == "spark":
            figures_engine = _spark_engine(
                resources, settings.analytics.spark_master, settings.analytics.spark_driver_memory
            )
        _roll_up(settings, requested, figures_engine)


def _spark_engine(resources: contextlib.ExitStack, master: str, driver_memory: str) -> rollup.FiguresEngine:
    """A Spark session on `master` for the run, as the figures engine; stopped when `resources` close."""
    try:
        from analytics import spark_engine
    except ImportError:
        typer.secho("teston: the spark engine needs pyspark: pip install 'teston[spark]'", err=True)
        raise typer.Exit(2) from None
    spark = resources.enter_context(spark_engine.spark_session(master, driver_memory=driver_memory))
    return functools.partial(spark_engine.figures_of_files, spark)


def _roll_up(settings: Settings, requested: list[date] | None, engine: rollup.FiguresEngine | None) -> None:
    from analytics import bookkeeping, jobs, rollup

    console = Console(stderr=True)
    with database.database_url(settings) as url:
        database.upgrade(url)
        if requested is None:
            with psycopg.connect(database.in_utc(url)) as conn:
                days = bookkeeping.raw_days(conn)
        else:
            days = requested
        if not days:
            typer.echo("no days to roll up")
            return
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("rolling up", total=len(days))
            outcomes: list[rollup.DayRollup | rollup.NoData] = []

            def done(result: rollup.DayRollup | rollup.NoData) -> None:
                outcomes.append(result)
                described = "no data for" if isinstance(result, rollup.NoData) else "rolled up"
                progress.update(task, advance=1, description=f"{described} {result.day}")

            run = jobs.run_recorded(
                lambda: psycopg.connect(database.in_utc(url)),
                "rollup",
                jobs.rollup_job(settings.export_dir, days, on_day=done, engine=engine),
                day=days[0] if len(days) == 1 else None,
            )
    table = Table(title=f"roll-up ({run.status})")
    for column in ("day", "status", "events", "wikis", "incomplete", "seconds"):
        table.add_column(column, justify="right" if column in {"events", "wikis", "seconds"} else "left")
    results = [outcome for outcome in outcomes if isinstance(outcome, rollup.DayRollup)]
    without_data = [outcome.day for outcome in outcomes if isinstance(outcome, rollup.NoData)]
    for outcome in outcomes:
        if isinstance(outcome, rollup.NoData):
            table.add_row(outcome.day.isoformat(), "no data", "", "", "", "")
            continue
        table.add_row(
            outcome.day.isoformat(),
            outcome.status,
            f"{outcome.events:,}",
            str(outcome.wikis),
            "yes" if outcome.incomplete else "",
            f"{outcome.seconds:.2f}",
        )
    Console().print(table)
    for missing in without_data:
        typer.echo(f"no data for {missing} (not collected; nothing written)")
    typer.echo(
        f"{len(results)} of {len(days)} days rolled up, {sum(r.events for r in results):,} events; "
        f"exports in {settings.export_dir}"
    )
    if run.status is not JobStatus.SUCCEEDED:
        typer.secho(f"teston: roll-up {run.status}: {run.error or run.details.get('reason')}", err=True)
        raise typer.Exit(1)
