"""The long-running commands and the components they compose: `up`, `scheduler` and `bot`.

This is the composition root of the service: it builds the HTTP session, the database pools, the
ingestion pipeline, the analytics scheduler and the Discord bot from the settings, and runs them together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime

import aiohttp
import typer
from prometheus_client import CollectorRegistry

from analytics.scheduler import AnalyticsScheduler, Schedule, connection_pool, runs_at_once
from bot.app import NO_TOKEN_HELP, DiscordBotService
from bot.client import BotUnavailable
from ingestion.metrics import IngestMetrics
from ingestion.pipeline import PipelineOptions
from ingestion.service import IngestionService, connector, open_source
from ingestion.writer import ResilientWriter
from teston import database
from teston.cli.common import ingestion_failures_exit, read_settings
from teston.runtime import Component, run_components, stop_on_signals
from teston.settings import Settings
from teston.wikis import WikiCatalog


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


def _schedule(settings: Settings) -> Schedule:
    return Schedule(
        export_dir=settings.export_dir,
        retention_days=settings.analytics.retention_days,
        intraday_interval=settings.analytics.intraday_interval,
        nightly_at=settings.analytics.nightly_at,
    )


@contextlib.contextmanager
def analytics_scheduler(settings: Settings, url: str) -> Iterator[AnalyticsScheduler]:
    """The analytics schedule on its own pool: a share of DB_MAX_OPEN_CONNS, connected only while jobs run."""
    with connection_pool(url, settings.database) as pool:
        workers = runs_at_once(settings.database.max_open_conns)
        yield AnalyticsScheduler(pool.connection, _schedule(settings), workers=workers)


def discord_bot(settings: Settings, url: str) -> list[Component]:
    """The bot for `teston up` when a token is set; otherwise say how to get one and run without it."""
    if settings.discord.token is None:
        typer.secho(f"teston: {NO_TOKEN_HELP}", err=True, fg="yellow")
        return []
    return [DiscordBotService(settings, url)]


async def _run_up(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        components: list[Component] = []
        if settings.ingest.enabled:
            components.append(
                ingestion_service(
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
        with analytics_scheduler(settings, url) as analytics:
            components.append(analytics)
            components.extend(discord_bot(settings, url))
            with stop_on_signals(stop):
                await run_components(components, stop)


def up() -> None:
    """Run the service (ingestion, roll-ups and, with DISCORD_TOKEN, the bot) until SIGINT or SIGTERM."""
    settings = read_settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        with ingestion_failures_exit():
            asyncio.run(_run_up(settings, url))


async def _run_scheduler(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    with analytics_scheduler(settings, url) as analytics, stop_on_signals(stop):
        await run_components([analytics], stop)


def scheduler() -> None:
    """Run only the analytics schedule (intraday roll-ups, nightly exports and retention)."""
    settings = read_settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        asyncio.run(_run_scheduler(settings, url))


async def _run_discord_bot(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await run_components([DiscordBotService(settings, url, essential=True)], stop)


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
