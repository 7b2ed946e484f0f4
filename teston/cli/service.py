"""The long-running commands and the components they compose: `up`, `sink`, `scheduler` and `bot`.

Each command reads the settings, makes what lives as long as it runs (the HTTP session, the metrics
registry), has `teston.cli.wiring` build the rest (catalog, pools, connectors, components), and runs the
components together.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import typer
from prometheus_client import CollectorRegistry

from bot.app import NO_TOKEN_HELP
from bot.client import BotUnavailable
from bot.metrics import BotMetrics
from ingestion.metrics import IngestMetrics
from teston.cli import wiring
from teston.cli.common import ingestion_failures_exit, read_settings
from teston.core import database
from teston.core.connections import ConnectionBudget
from teston.core.monitoring import Health
from teston.core.roles import Role, configured_roles, missing_configuration
from teston.core.runtime import Component, prompt_thread_switches, run_components, stop_on_signals
from teston.core.settings import Settings
from teston.core.wikis import WikiCatalog


def discord_bot(
    settings: Settings,
    url: str,
    catalog: WikiCatalog,
    registry: CollectorRegistry | None = None,
    connections: int | None = None,
) -> list[Component]:
    """The bot for `teston up` when a token is set; otherwise say how to get one and run without it."""
    if settings.discord.token is None:
        typer.secho(f"teston: {NO_TOKEN_HELP}", err=True, fg="yellow")
        return []
    metrics = BotMetrics(registry) if registry is not None else None
    return [
        wiring.discord_bot_service(settings, url, catalog=catalog, metrics=metrics, connections=connections)
    ]


def _up_budget(settings: Settings, roles: frozenset[Role]) -> ConnectionBudget:
    bot = Role.BOT in roles and settings.discord.token is not None
    return wiring.connection_budget(
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
    catalog = wiring.catalog()
    async with aiohttp.ClientSession() as session:
        components: list[Component] = []
        if Role.INGEST in roles:
            metrics = IngestMetrics(registry)
            source = wiring.event_source(
                settings, session, source_spec=settings.ingest.stream_url, since=None, metrics=metrics
            )
            ingestion = wiring.ingestion_service(
                settings,
                url,
                source,
                catalog=catalog,
                metrics=metrics,
                since=None,
                batch_size=settings.ingest.batch_size,
                metrics_port=0,  # served below, with the other roles' metrics
            )
            checks.append((ingestion.name, ingestion.health))
            components.append(ingestion)
        if Role.SINK in roles:
            # The sink keeps its own endpoint (SINK_METRICS_PORT), where `teston health` probes it.
            components.append(
                wiring.sink_service(
                    settings, url, catalog=catalog, metrics_port=settings.bus.sink_metrics_port
                )
            )
        budget = _up_budget(settings, roles)
        with contextlib.ExitStack() as stack:
            if Role.SCHEDULER in roles:
                scheduler = wiring.analytics_scheduler(settings, url, budget.analytics, registry)
                components.append(stack.enter_context(scheduler))
            if Role.BOT in roles:
                if settings.roles is not None and Role.BOT in settings.roles:
                    components.append(
                        wiring.discord_bot_service(
                            settings,
                            url,
                            catalog=catalog,
                            essential=True,
                            metrics=BotMetrics(registry),
                            connections=budget.bot,
                        )
                    )
                else:
                    components.extend(discord_bot(settings, url, catalog, registry, budget.bot))
            # Started first and stopped last, so the final figures can still be scraped while stopping.
            components.insert(0, wiring.metrics_server(settings, registry, checks))
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
    sink = wiring.sink_service(
        settings, url, catalog=wiring.catalog(), metrics_port=metrics_port, idle_exit=idle_exit
    )
    with stop_on_signals(stop), prompt_thread_switches():
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
    budget = wiring.connection_budget(settings, analytics=True)
    with (
        wiring.analytics_scheduler(settings, url, budget.analytics, registry) as analytics,
        stop_on_signals(stop),
    ):
        await run_components([wiring.metrics_server(settings, registry), analytics], stop)


def scheduler() -> None:
    """Run only the analytics schedule (intraday roll-ups, nightly exports and retention)."""
    settings = read_settings()
    with database.database_url(settings) as url:
        database.upgrade(url)
        asyncio.run(_run_scheduler(settings, url))


async def _run_discord_bot(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    registry = CollectorRegistry()
    bot = wiring.discord_bot_service(
        settings, url, catalog=wiring.catalog(), essential=True, metrics=BotMetrics(registry)
    )
    with stop_on_signals(stop):
        await run_components([wiring.metrics_server(settings, registry), bot], stop)


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
