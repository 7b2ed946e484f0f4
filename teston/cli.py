"""The `teston` command: a thin layer that reads settings once and calls the library."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime

import aiohttp
import psycopg
import sqlalchemy.exc
import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from analytics import jobs, rollup
from analytics.scheduler import AnalyticsScheduler, Schedule, connection_pool, runs_at_once
from bot.answers import Failure, Problem
from bot.app import NO_TOKEN_HELP, DiscordBotService, answer_once, answer_without_database
from bot.client import BotUnavailable
from bot.commands import Invoker
from bot.rendering import plain_text
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import IngestSummary, PipelineOptions
from ingestion.progress import ReplayProgress
from ingestion.replay import REPLAY_BATCH_SIZE
from ingestion.service import IngestionService, connector, open_source
from ingestion.sources import is_url
from ingestion.writer import ResilientWriter, WriterStopped
from teston import __version__, database
from teston.embedded import EmbeddedPostgres, EmbeddedPostgresError
from teston.runtime import Component, run_components, stop_on_signals
from teston.settings import Settings, SettingsError, load_settings, parse_duration
from teston.wikis import WikiCatalog

# Tracebacks never show local variables: they could hold a database password.
app = typer.Typer(
    help="TestON: Wikipedia's live edit stream, answered in Discord.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The PostgreSQL database: migrations and connection.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.secho(f"teston: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return settings


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"teston {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """TestON: Wikipedia's live edit stream, answered in Discord."""


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the schema migrations."""
    settings = _settings()
    with database.database_url(settings) as url:
        database.upgrade(url, revision)
        typer.echo(f"database at revision {database.current_revision(url)}")


@db_app.command("url")
def db_url() -> None:
    """Print the connection URL in use (usable by psql); starts the embedded server if needed."""
    settings = _settings()
    if settings.database.url:
        typer.echo(settings.database.url)
        return
    server = EmbeddedPostgres(settings.embedded_data_dir)
    url = server.start()
    server.keep_running()
    if server.started_here:
        typer.echo("embedded PostgreSQL started; it keeps running until `teston db stop`", err=True)
    typer.echo(url)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server if it is running."""
    settings = _settings()
    if settings.database.url:
        typer.echo("a database URL is configured; TestON does not manage that server", err=True)
        raise typer.Exit(1)
    server = EmbeddedPostgres(settings.embedded_data_dir)
    running = server.is_running()
    server.stop()
    typer.echo("embedded PostgreSQL stopped" if running else "embedded PostgreSQL was not running")


def _parse_since(value: str | None) -> datetime | None:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration back from now (`2h`, `1d` as `24h`)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return datetime.now(UTC) - parse_duration(value)
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is neither an ISO time nor a duration", param_hint="--since"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ingestion_service(
    settings: Settings,
    url: str,
    session: aiohttp.ClientSession,
    *,
    source_spec: str,
    since: datetime | None,
    batch_size: int,
    metrics_port: int,
    registry: CollectorRegistry,
) -> IngestionService:
    metrics = IngestMetrics(registry)
    source = open_source(
        source_spec,
        session=session,
        user_agent_product=settings.ingest.user_agent_product,
        since=since,
        on_reconnect=metrics.count_reconnect,
    )
    writer = ResilientWriter(connector(url), on_outage=metrics.count_outage)
    options = PipelineOptions(
        batch_size=batch_size,
        flush_interval=settings.ingest.flush_interval.total_seconds(),
        since=since,
    )
    return IngestionService(
        source,
        writer,
        WikiCatalog.load(),
        options=options,
        metrics=metrics,
        metrics_address=(settings.ingest.metrics_host, metrics_port),
    )


async def _run_ingest(
    settings: Settings,
    url: str,
    *,
    source_spec: str,
    since: datetime | None,
    batch_size: int,
    metrics_port: int,
    show_progress: bool,
) -> IngestSummary:
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        service = _ingestion_service(
            settings,
            url,
            session,
            source_spec=source_spec,
            since=since,
            batch_size=batch_size,
            metrics_port=metrics_port,
            registry=CollectorRegistry(),
        )
        with contextlib.ExitStack() as stack:
            if show_progress:
                progress = stack.enter_context(ReplayProgress(Console(stderr=True), service.source))
                service.pipeline.on_progress = progress.update
            stack.enter_context(stop_on_signals(stop))
            await run_components([service], stop)
        return service.summary


@app.command()
def ingest(
    source: str | None = typer.Option(
        None,
        "--source",
        help="Stream URL, or a .jsonl[.gz] / .sse[.gz] file to replay (default: STREAM_URL).",
    ),
    since: str | None = typer.Option(
        None, "--since", help="Where a stream without a stored cursor starts: ISO time or duration ago (2h)."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Events per batch (default: INGEST_BATCH_SIZE live, {REPLAY_BATCH_SIZE} for a file).",
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=0, max=65535, help="Prometheus port (0 disables)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar for file replays (default: when a terminal)."
    ),
) -> None:
    """Store recent changes: follow the live stream, or replay a file to its end (Ctrl-C flushes, exits 0)."""
    settings = _settings()
    spec = source or settings.ingest.stream_url
    started_since = _parse_since(since)
    show_progress = (not is_url(spec)) and (progress if progress is not None else sys.stderr.isatty())
    with database.database_url(settings) as url:
        database.upgrade(url)
        try:
            summary = asyncio.run(
                _run_ingest(
                    settings,
                    url,
                    source_spec=spec,
                    since=started_since,
                    batch_size=batch_size
                    or (settings.ingest.batch_size if is_url(spec) else REPLAY_BATCH_SIZE),
                    # A replay serves no metrics unless asked: it must not collide with a running `up`.
                    metrics_port=(settings.ingest.metrics_port if is_url(spec) else 0)
                    if metrics_port is None
                    else metrics_port,
                    show_progress=show_progress,
                )
            )
        except FileNotFoundError as exc:
            typer.secho(f"teston: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        except WriterStopped as exc:
            typer.secho(f"teston: stopped with a batch not committed ({exc}); it will be resumed", err=True)
            raise typer.Exit(1) from None
    typer.echo(summary.describe())


async def _run_up(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        components: list[Component] = []
        if settings.ingest.enabled:
            components.append(
                _ingestion_service(
                    settings,
                    url,
                    session,
                    source_spec=settings.ingest.stream_url,
                    since=None,
                    batch_size=settings.ingest.batch_size,
                    metrics_port=settings.ingest.metrics_port,
                    registry=CollectorRegistry(),
                )
            )
        with _analytics_scheduler(settings, url) as analytics:
            components.append(analytics)
            components.extend(_discord_bot(settings, url))
            with stop_on_signals(stop):
                await run_components(components, stop)


@app.command()
def up() -> None:
    """Run the service (ingestion, roll-ups and, with DISCORD_TOKEN, the bot) until SIGINT or SIGTERM."""
    settings = _settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        try:
            asyncio.run(_run_up(settings, url))
        except WriterStopped as exc:
            typer.secho(f"teston: stopped with a batch not committed ({exc}); it will be resumed", err=True)
            raise typer.Exit(1) from None


def _schedule(settings: Settings) -> Schedule:
    return Schedule(
        export_dir=settings.export_dir,
        retention_days=settings.analytics.retention_days,
        intraday_interval=settings.analytics.intraday_interval,
        nightly_at=settings.analytics.nightly_at,
    )


@contextlib.contextmanager
def _analytics_scheduler(settings: Settings, url: str) -> Iterator[AnalyticsScheduler]:
    """The analytics schedule on its own pool: a share of DB_MAX_OPEN_CONNS, connected only while jobs run."""
    with connection_pool(url, settings.database) as pool:
        workers = runs_at_once(settings.database.max_open_conns)
        yield AnalyticsScheduler(pool.connection, _schedule(settings), workers=workers)


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
    today = rollup.today_utc()
    if day is not None:
        return [_parse_day(day, "--date", today=today)]
    assert first is not None and last is not None
    start, end = _parse_day(first, "--from", today=today), _parse_day(last, "--to", today=today)
    if start > end:
        raise typer.BadParameter(
            f"--from {start} is after --to {end}; give the first day of the range to --from",
            param_hint="'--from' / '--to'",
        )
    return rollup.days_between(start, end)


@app.command("rollup")
def rollup_command(
    day: str | None = typer.Option(None, "--date", help="One UTC day (YYYY-MM-DD)."),
    first: str | None = typer.Option(None, "--from", help="First UTC day of a range."),
    last: str | None = typer.Option(None, "--to", help="Last UTC day of a range (inclusive)."),
    every: bool = typer.Option(False, "--all", help="Every day present in the raw table."),
) -> None:
    """Export and roll up days into the summary tables (closed days final, today partial)."""
    chosen = sum([day is not None, first is not None or last is not None, every])
    if chosen != 1 or (first is None) != (last is None):
        raise typer.BadParameter("give exactly one of --date D, --from D --to D, or --all")
    requested = None if every else _requested_days(day, first, last)
    settings = _settings()
    console = Console(stderr=True)
    with database.database_url(settings) as url:
        database.upgrade(url)
        if requested is None:
            with psycopg.connect(url) as conn:
                days = rollup.raw_days(conn)
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
                lambda: psycopg.connect(url),
                "rollup",
                jobs.rollup_job(settings.export_dir, days, on_day=done),
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
    if run.status != jobs.SUCCEEDED:
        typer.secho(f"teston: roll-up {run.status}: {run.error or run.details.get('reason')}", err=True)
        raise typer.Exit(1)


async def _run_scheduler(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    with _analytics_scheduler(settings, url) as analytics, stop_on_signals(stop):
        await run_components([analytics], stop)


@app.command()
def scheduler() -> None:
    """Run only the analytics schedule (intraday roll-ups, nightly exports and retention)."""
    settings = _settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        asyncio.run(_run_scheduler(settings, url))


def _discord_bot(settings: Settings, url: str) -> list[Component]:
    """The bot for `teston up` when a token is set; otherwise say how to get one and run without it."""
    if settings.discord.token is None:
        typer.secho(f"teston: {NO_TOKEN_HELP}", err=True, fg="yellow")
        return []
    return [DiscordBotService(settings, url)]


@contextlib.contextmanager
def _quiet_unless_asked(settings: Settings) -> Iterator[None]:
    """`ask` is for scripts: only warnings and errors on stderr, unless LOG_LEVEL says otherwise."""
    root = logging.getLogger()
    level = root.level
    if "log_level" not in settings.model_fields_set:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _schema_is_current(url: str) -> bool:
    """Whether the database is at this TestON's newest migration; says what to run when it is not."""
    current = database.current_revision(url)
    head = database.head_revision()
    if current == head:
        return True
    found = f"is at revision {current}" if current else "has no TestON tables yet"
    typer.secho(
        f"teston: the database {found}; this TestON needs revision {head}. "
        "Run `teston db upgrade` (or `teston up`, which upgrades it) first.",
        err=True,
        fg="red",
    )
    return False


@app.command()
def ask(
    text: str = typer.Argument(
        ..., help='A bot command, e.g. "!stats 2021-08-27 en" (the ! or COMMAND_PREFIX is optional).'
    ),
    user_id: int | None = typer.Option(
        None, "--user-id", help="Answer as this Discord user (their language)."
    ),
    guild_id: int | None = typer.Option(None, "--guild-id", help="Answer as in this Discord server."),
) -> None:
    """Run any bot command through the bot's own code and print the reply as plain text.

    It only reads (and `setLang` writes a default): the schema must be current (`teston db upgrade`).
    """
    settings = _settings()
    prefix = settings.discord.command_prefix
    # Whoever runs the CLI administers the database, so server defaults may be set from here.
    invoker = Invoker(user_id=user_id, guild_id=guild_id, can_manage_guild=True)
    with _quiet_unless_asked(settings):
        # Help and mistakes are answered without starting or even reaching a database.
        answer = answer_without_database(text, prefix=prefix)
        if answer is None:
            with database.database_url(settings) as url:
                if not _schema_is_current(url):
                    raise typer.Exit(1)
                answer = asyncio.run(
                    answer_once(
                        url,
                        text,
                        invoker,
                        prefix=prefix,
                        retention_days=settings.analytics.retention_days,
                    )
                )
    typer.echo(plain_text(answer, prefix=prefix))
    if isinstance(answer, Problem):
        raise typer.Exit(2)
    if isinstance(answer, Failure):
        raise typer.Exit(1)


async def _run_discord_bot(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await run_components([DiscordBotService(settings, url, essential=True)], stop)


@app.command("bot")
def bot_command() -> None:
    """Run only the Discord bot (needs DISCORD_TOKEN) until SIGINT or SIGTERM."""
    settings = _settings()
    if settings.discord.token is None:
        typer.secho(f"teston: {NO_TOKEN_HELP}", err=True, fg="red")
        raise typer.Exit(2)
    with database.database_url(settings) as url:
        database.upgrade(url)
        try:
            asyncio.run(_run_discord_bot(settings, url))
        except BotUnavailable:
            # Already logged as one line saying what to change (a refused DISCORD_TOKEN, say).
            raise typer.Exit(1) from None


def main() -> None:
    try:
        app()
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        cause = getattr(exc, "orig", None) or exc  # Alembic's engine wraps the psycopg error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        typer.secho(
            f"teston: cannot use PostgreSQL ({reason}); check DB_ADDR / DATABASE_URL, "
            "or unset them to use the embedded server",
            err=True,
            fg="red",
        )
        raise SystemExit(1) from None
    except EmbeddedPostgresError as exc:
        typer.secho(f"teston: the embedded PostgreSQL failed: {exc}", err=True, fg="red")
        raise SystemExit(1) from None
