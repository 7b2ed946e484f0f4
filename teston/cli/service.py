"""The long-running commands and the components they compose: `up`, `sink`, `scheduler` and `bot`.

This is the composition root of the service: it builds the HTTP session, the database pools, the
ingestion pipeline, the analytics scheduler and the Discord bot from the settings, and runs them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import psycopg
import typer
from prometheus_client import CollectorRegistry

from analytics.metrics import JobMetrics
from analytics.scheduler import INTRADAY, NIGHTLY, AnalyticsScheduler, Schedule, connection_pool
from bot.app import NO_TOKEN_HELP, DiscordBotService
from bot.client import BotUnavailable
from bot.metrics import BotMetrics
from ingestion.bus.engine import BusOptions, open_consumer, open_publisher
from ingestion.bus.publisher import BusCommitter
from ingestion.bus.sink import BusSink, SinkMetrics
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import PipelineOptions
from ingestion.resilient_writer import ResilientWriter
from ingestion.service import ClosingCommitter, IngestionService, connector, open_source
from teston import database
from teston.bus_address import parse_bus_url
from teston.cli.common import ingestion_failures_exit, read_settings
from teston.connections import ConnectionBudget, TooFewConnections, share_connections
from teston.embedded import EmbeddedPostgres
from teston.monitoring import Health, MetricsServer, all_healthy
from teston.roles import Role, configured_roles, missing_configuration
from teston.runtime import Component, run_components, stop_on_signals
from teston.settings import BusSettings, Settings
from teston.wikis import WikiCatalog


def bus_options(bus: BusSettings) -> BusOptions:
    """The stream limits and delivery timings from the `BUS_*` settings."""
    return BusOptions(
        duplicate_window=bus.duplicate_window,
        max_age=bus.max_age,
        max_bytes=bus.max_bytes,
        replicas=bus.replicas,
        partitions=bus.partitions,
        ack_wait=bus.ack_wait,
        publish_timeout=bus.publish_timeout,
    )


def ingestion_service(
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
    """The ingestion component for a stream URL or a file, writing to the database at `url`."""
    metrics = IngestMetrics(registry)
    source = open_source(
        source_spec,
        session=session,
        user_agent_product=settings.ingest.user_agent_product,
        since=since,
        on_reconnect=metrics.count_reconnect,
    )
    database_writer = ResilientWriter(_connector(settings, url), on_outage=metrics.count_outage)
    writer: ClosingCommitter = database_writer
    if settings.bus.url is not None:
        # With a bus, valid events are published; quarantine and the cursor still go to PostgreSQL.
        address, bus = parse_bus_url(settings.bus.url), bus_options(settings.bus)
        writer = BusCommitter(
            functools.partial(open_publisher, address, bus), database_writer, asyncio.get_running_loop()
        )
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


def sink_service(
    settings: Settings, url: str, *, metrics_port: int, idle_exit: float | None = None
) -> BusSink:
    """A sink consuming `BUS_URL` into the database at `url`, with its own `/metrics` (bus lag)."""
    if settings.bus.url is None:
        raise ValueError("a sink needs BUS_URL")
    address, options = parse_bus_url(settings.bus.url), bus_options(settings.bus)
    return BusSink(
        functools.partial(open_consumer, address, options),
        ResilientWriter(_connector(settings, url)),
        WikiCatalog.load(),
        batch_size=settings.bus.sink_batch_size,
        idle_exit=idle_exit,
        metrics=SinkMetrics(CollectorRegistry()),
        metrics_address=(settings.ingest.metrics_host, metrics_port),
    )


def _connector(settings: Settings, url: str) -> Callable[[], psycopg.Connection[Any]]:
    """The writer's connection factory; with the embedded server, one that stops retrying once it is gone."""
    connect = connector(url)
    if settings.database.url:
        return connect
    server = EmbeddedPostgres(settings.embedded_data_dir)

    def connect_while_running() -> psycopg.Connection[Any]:
        # Not a connection error, so the writer does not retry: nobody will start this server again.
        server.check_running()
        return connect()

    return connect_while_running


def _schedule(settings: Settings) -> Schedule:
    return Schedule(
        export_dir=settings.export_dir,
        retention_days=settings.analytics.retention_days,
        intraday_interval=settings.analytics.intraday_interval,
        nightly_at=settings.analytics.nightly_at,
    )


def metrics_server(
    settings: Settings, registry: CollectorRegistry, checks: Sequence[tuple[str, Health]] = ()
) -> MetricsServer:
    """The process's one `/metrics` and `/healthz` endpoint, on METRICS_HOST:METRICS_PORT (0: none)."""
    return MetricsServer(
        registry,
        all_healthy(checks),
        host=settings.ingest.metrics_host,
        port=settings.ingest.metrics_port,
    )


def connection_budget(
    settings: Settings,
    *,
    ingestion: bool = False,
    sink: bool = False,
    analytics: bool = False,
    bot: bool = False,
) -> ConnectionBudget:
    """DB_MAX_OPEN_CONNS shared out among the parts to run; too few for them is one line and exit 2."""
    try:
        return share_connections(
            settings.database.max_open_conns, ingestion=ingestion, sink=sink, analytics=analytics, bot=bot
        )
    except TooFewConnections as exc:
        typer.secho(f"teston: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def analytics_scheduler(
    settings: Settings, url: str, connections: int, registry: CollectorRegistry | None = None
) -> Iterator[AnalyticsScheduler]:
    """The analytics schedule on its own pool of `connections`, connected only while jobs run."""
    metrics = JobMetrics(registry, (INTRADAY, NIGHTLY)) if registry is not None else None
    with connection_pool(url, settings.database, connections) as pool:
        yield AnalyticsScheduler(pool.connection, _schedule(settings), workers=connections, metrics=metrics)


def discord_bot(
    settings: Settings, url: str, registry: CollectorRegistry | None = None, connections: int | None = None
) -> list[Component]:
    """The bot for `teston up` when a token is set; otherwise say how to get one and run without it."""
    if settings.discord.token is None:
        typer.secho(f"teston: {NO_TOKEN_HELP}", err=True, fg="yellow")
        return []
    metrics = BotMetrics(registry) if registry is not None else None
    return [DiscordBotService(settings, url, metrics=metrics, connections=connections)]


def _up_budget(settings: Settings, roles: frozenset[Role]) -> ConnectionBudget:
    bot = Role.BOT in roles and settings.discord.token is not None
    return connection_budget(
        settings,
        ingestion=Role.INGEST in roles,
        sink=Role.SINK in roles,
        analytics=Role.SCHEDULER in roles,
        bot=bot,
    )


def up_roles(settings: Settings) -> frozenset[Role]:
    """The roles `teston up` runs: `TESTON_ROLES`, or every one that is configured."""
    if settings.roles is not None:
        return settings.roles
    return configured_roles(
        ingest_enabled=settings.ingest.enabled,
        bus_url=settings.bus.url,
        discord_token=settings.discord.token is not None,
    )


async def _run_up(settings: Settings, url: str, roles: frozenset[Role]) -> None:
    stop = asyncio.Event()
    # One registry and one endpoint (METRICS_PORT) for the whole process, whichever roles it runs.
    registry = CollectorRegistry()
    checks: list[tuple[str, Health]] = []
    async with aiohttp.ClientSession() as session:
        components: list[Component] = []
        if Role.INGEST in roles:
            ingestion = ingestion_service(
                settings,
                url,
                session,
                source_spec=settings.ingest.stream_url,
                since=None,
                batch_size=settings.ingest.batch_size,
                metrics_port=0,  # served below, with the other roles' metrics
                registry=registry,
            )
            checks.append((ingestion.name, ingestion.health))
            components.append(ingestion)
        if Role.SINK in roles:
            # The sink keeps its own endpoint (SINK_METRICS_PORT), where `teston health` probes it.
            components.append(sink_service(settings, url, metrics_port=settings.bus.sink_metrics_port))
        budget = _up_budget(settings, roles)
        with contextlib.ExitStack() as stack:
            if Role.SCHEDULER in roles:
                scheduler = analytics_scheduler(settings, url, budget.analytics, registry)
                components.append(stack.enter_context(scheduler))
            if Role.BOT in roles:
                if settings.roles is not None and Role.BOT in settings.roles:
                    bot_metrics = BotMetrics(registry)
                    components.append(
                        DiscordBotService(
                            settings, url, essential=True, metrics=bot_metrics, connections=budget.bot
                        )
                    )
                else:
                    components.extend(discord_bot(settings, url, registry, budget.bot))
            # Started first and stopped last, so the final figures can still be scraped while stopping.
            components.insert(0, metrics_server(settings, registry, checks))
            if Role.INGEST in roles:
                # Before the port: a second `up` is told who ingests the stream, not that the port is taken.
                await ingestion.claim_stream()
            with stop_on_signals(stop):
                await run_components(components, stop)


def up() -> None:
    """Run the service (TESTON_ROLES, default: ingestion, sink with BUS_URL, roll-ups, bot with a token)."""
    settings = read_settings()
    roles = up_roles(settings)
    problem = missing_configuration(
        roles, bus_url=settings.bus.url, discord_token=settings.discord.token is not None
    )
    if problem is not None:
        typer.secho(f"teston: {problem}", err=True, fg="red")
        raise typer.Exit(2)
    _up_budget(settings, roles)  # refuse a DB_MAX_OPEN_CONNS too low before starting anything
    with database.database_url(settings) as url:
        database.upgrade(url)
        with ingestion_failures_exit():
            try:
                asyncio.run(_run_up(settings, url, roles))
            except BotUnavailable:
                raise typer.Exit(1) from None


async def _run_sink(settings: Settings, url: str, *, metrics_port: int, idle_exit: float | None) -> str:
    stop = asyncio.Event()
    sink = sink_service(settings, url, metrics_port=metrics_port, idle_exit=idle_exit)
    with stop_on_signals(stop):
        await run_components([sink], stop)
    return sink.summary.describe()


def sink(
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Prometheus port (default: SINK_METRICS_PORT; 0 disables).",
    ),
    idle_exit: float | None = typer.Option(
        None, "--idle-exit", min=0.1, help="Stop once the bus has had nothing for this many seconds."
    ),
) -> None:
    """Store the bus's events (BUS_URL) in PostgreSQL; run any number (Ctrl-C finishes the batch)."""
    settings = read_settings()
    if settings.bus.url is None:
        typer.secho("teston: `teston sink` needs BUS_URL (nats://… or kafka://…)", err=True, fg="red")
        raise typer.Exit(2)
    port = settings.bus.sink_metrics_port if metrics_port is None else metrics_port
    with database.database_url(settings) as url:
        database.upgrade(url)
        with ingestion_failures_exit():
            summary = asyncio.run(_run_sink(settings, url, metrics_port=port, idle_exit=idle_exit))
    typer.echo(summary)


async def _run_scheduler(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    registry = CollectorRegistry()
    budget = connection_budget(settings, analytics=True)
    with analytics_scheduler(settings, url, budget.analytics, registry) as analytics, stop_on_signals(stop):
        await run_components([metrics_server(settings, registry), analytics], stop)


def scheduler() -> None:
    """Run only the analytics schedule (intraday roll-ups, nightly exports and retention)."""
    settings = read_settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        asyncio.run(_run_scheduler(settings, url))


async def _run_discord_bot(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    registry = CollectorRegistry()
    bot = DiscordBotService(settings, url, essential=True, metrics=BotMetrics(registry))
    with stop_on_signals(stop):
        await run_components([metrics_server(settings, registry), bot], stop)


def bot_command() -> None:
    """Run only the Discord bot (needs DISCORD_TOKEN) until SIGINT or SIGTERM."""
    settings = read_settings()
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
