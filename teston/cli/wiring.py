"""Where every resource a TestON process uses is built, from the settings, and nowhere else.

The commands beside this module call these functions and pass what they return into ingestion,
analytics and the bot, which never build a resource they use:

- the wiki catalog (`catalog`), loaded once per process and shared by every part;
- the connection budget (`connection_budget`): `DB_MAX_OPEN_CONNS` shared out among the parts;
- the ingester's and a sink's connection factory (`writer_connector`);
- the schedule's connections (`analytics_scheduler`, its jobs in child processes) or pool
  (`analytics_pool`, for jobs run in the process), the bot's pool (`bot_pool`) and its LISTEN
  connections for the live feeds (`listen_connector`), `teston ask`'s one-connection pool (`ask_pool`);
- the ingester's source (`event_source`), the components themselves (`ingestion_service`,
  `sink_service`, `analytics_scheduler`, `discord_bot_service`), the process's metrics endpoint
  (`metrics_server`) and a component's own (`metrics_endpoint`).

The HTTP session, the metrics registries and the Spark session are made by the command that runs them
(`teston/cli/service.py`, `ingest.py`, `rollup.py`), for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import psycopg
import typer
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from analytics.metrics import JobMetrics
from analytics.scheduler import INTRADAY, NIGHTLY, AnalyticsScheduler, ChildJobs, Schedule
from bot.app import DiscordBotService
from bot.commands import DEFAULT_QUERY_TIMEOUT
from bot.metrics import BotMetrics
from bot.queries import limit_session_statement_time
from ingestion.bus.engine import BusOptions, open_consumer, open_publisher
from ingestion.bus.publisher import BusCommitter
from ingestion.bus.sink import BusSink, SinkMetrics
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import IngestSummary, PipelineOptions
from ingestion.resilient_writer import ResilientWriter
from ingestion.service import ClosingCommitter, IngestionService, open_source
from ingestion.sources import Source
from teston.cli.common import LOG_FORMAT
from teston.core import database
from teston.core.bus_address import parse_bus_url
from teston.core.connections import ConnectionBudget, TooFewConnections, share_connections
from teston.core.embedded import EmbeddedPostgres
from teston.core.monitoring import Health, MetricsServer, all_healthy
from teston.core.settings import BusSettings, DatabaseSettings, Settings
from teston.core.wikis import WikiCatalog


def catalog() -> WikiCatalog:
    """The shipped wiki catalog; load it once per process and pass it to every part."""
    return WikiCatalog.load()


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


def writer_connector(url: str) -> Callable[[], psycopg.Connection[Any]]:
    """A connection factory for a writer: its own connection, reopened after every outage."""
    conninfo = database.in_utc(url)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo, connect_timeout=5, application_name="teston-ingest")

    return connect


def _writer_connector(settings: Settings, url: str) -> Callable[[], psycopg.Connection[Any]]:
    """The writer's connection factory; with the embedded server, one that stops retrying once it is gone."""
    connect = writer_connector(url)
    if settings.database.url:
        return connect
    server = EmbeddedPostgres(settings.embedded_data_dir)

    def connect_while_running() -> psycopg.Connection[Any]:
        # Not a connection error, so the writer does not retry: nobody will start this server again.
        server.check_running()
        return connect()

    return connect_while_running


def analytics_pool(url: str, settings: DatabaseSettings, connections: int) -> ConnectionPool:
    """An unopened pool of `connections` (the schedule's share of `DB_MAX_OPEN_CONNS`, one per job running
    at once): no connection until a job needs one, none kept idle long."""
    return ConnectionPool(
        database.in_utc(url),
        min_size=0,
        max_size=connections,
        max_idle=settings.max_idle_time.total_seconds(),
        open=False,
        name="analytics",
    )


def bot_pool(url: str, settings: DatabaseSettings, *, max_size: int) -> AsyncConnectionPool:
    """The bot's (unopened) async pool of `max_size` connections; the bot opens it when it starts.

    No statement of the bot runs longer than a command may take (`bot.commands.DEFAULT_QUERY_TIMEOUT`):
    the reads sent as statements of their own have no transaction to set their limit in.
    """

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await limit_session_statement_time(conn, DEFAULT_QUERY_TIMEOUT)

    return AsyncConnectionPool(
        database.in_utc(url),
        configure=configure,
        # Connections are opened on demand; idle ones above one are closed after DB_MAX_IDLE_TIME,
        # the nearest psycopg equivalent of Go's database/sql idle limits.
        min_size=min(1, settings.max_idle_conns),
        max_size=max_size,
        max_idle=settings.max_idle_time.total_seconds(),
        name="teston-bot",
        open=False,
    )


def ask_pool(url: str) -> AsyncConnectionPool:
    """`teston ask`'s pool: one connection, for one answer; open it with `async with`."""
    return AsyncConnectionPool(database.in_utc(url), min_size=1, max_size=1, open=False, name="teston-ask")


def listen_connector(url: str) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    """A factory of the live feeds' LISTEN connection (autocommit, so notifications arrive at once)."""
    conninfo = database.in_utc(url)

    def connect() -> Awaitable[psycopg.AsyncConnection[Any]]:
        return psycopg.AsyncConnection.connect(conninfo, autocommit=True)

    return connect


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


def event_source(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    source_spec: str,
    since: datetime | None,
    metrics: IngestMetrics,
) -> Source:
    """The live stream for a URL (on `session`), a file replay otherwise."""
    return open_source(
        source_spec,
        session=session,
        user_agent_product=settings.ingest.user_agent_product,
        since=since,
        on_reconnect=metrics.count_reconnect,
    )


def ingestion_service(
    settings: Settings,
    url: str,
    source: Source,
    *,
    catalog: WikiCatalog,
    metrics: IngestMetrics,
    since: datetime | None,
    batch_size: int,
    metrics_port: int,
    on_progress: Callable[[IngestSummary], None] | None = None,
) -> IngestionService:
    """The ingestion component reading `source` into the database at `url` (or onto `BUS_URL`)."""
    database_writer = ResilientWriter(_writer_connector(settings, url), on_outage=metrics.count_outage)
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
        catalog,
        options=options,
        metrics=metrics,
        serve_metrics=metrics_endpoint(metrics.registry, settings.ingest.metrics_host, metrics_port),
        on_progress=on_progress,
    )


def sink_service(
    settings: Settings,
    url: str,
    *,
    catalog: WikiCatalog,
    metrics_port: int,
    idle_exit: float | None = None,
) -> BusSink:
    """A sink consuming `BUS_URL` into the database at `url`, with its own `/metrics` (bus lag)."""
    if settings.bus.url is None:
        raise ValueError("a sink needs BUS_URL")
    address, options = parse_bus_url(settings.bus.url), bus_options(settings.bus)
    metrics = SinkMetrics(CollectorRegistry())
    return BusSink(
        functools.partial(open_consumer, address, options),
        ResilientWriter(_writer_connector(settings, url)),
        catalog,
        batch_size=settings.bus.sink_batch_size,
        idle_exit=idle_exit,
        metrics=metrics,
        serve_metrics=metrics_endpoint(
            metrics.registry, settings.ingest.metrics_host, metrics_port, variable="SINK_METRICS_PORT"
        ),
    )


@contextlib.contextmanager
def analytics_scheduler(
    settings: Settings, url: str, connections: int, registry: CollectorRegistry | None = None
) -> Iterator[AnalyticsScheduler]:
    """The analytics schedule, running `connections` jobs at once, each in a child process.

    A job's child runs it on a connection of its own, closed when the child ends (`JOB_TIMEOUT` at
    most). The schedule's own reads in between (the newest final day after a run, a run a child could
    not record) each open one connection and close it at once: no idle connection waits beside a
    running child, so together they stay within the schedule's share.
    """
    metrics = JobMetrics(registry, (INTRADAY, NIGHTLY)) if registry is not None else None
    schedule = Schedule(
        export_dir=settings.export_dir,
        retention_days=settings.analytics.retention_days,
        intraday_interval=settings.analytics.intraday_interval,
        nightly_at=settings.analytics.nightly_at,
    )
    conninfo = database.in_utc(url)
    child = ChildJobs(
        url=conninfo,
        timeout=settings.analytics.job_timeout,
        log_level=settings.log_level,
        log_format=LOG_FORMAT,
    )

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo, connect_timeout=5, application_name="teston-scheduler")

    yield AnalyticsScheduler(connect, schedule, workers=connections, metrics=metrics, child=child)


def discord_bot_service(
    settings: Settings,
    url: str,
    *,
    catalog: WikiCatalog,
    essential: bool = False,
    metrics: BotMetrics | None = None,
    connections: int | None = None,
    **options: Any,
) -> DiscordBotService:
    """The Discord bot on a pool of its share of the budget (all of it when it runs alone).

    The feeds' LISTEN connection is one of the share when the share has room for it; a share of one
    connection has none, and the feeds find new changes by polling alone.
    """
    size = connections or settings.database.max_open_conns
    return DiscordBotService(
        settings,
        bot_pool(url, settings.database, max_size=max(1, size - 1)),
        catalog,
        listen=listen_connector(url) if size > 1 else None,
        essential=essential,
        metrics=metrics,
        **options,
    )


def metrics_endpoint(
    registry: CollectorRegistry, host: str, port: int, *, variable: str = "METRICS_PORT"
) -> Callable[[Health], MetricsServer] | None:
    """A component's own `/metrics` and `/healthz` on host:port, given its health check (port 0: none)."""
    if port == 0:
        return None
    return functools.partial(MetricsServer, registry, host=host, port=port, variable=variable)


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
