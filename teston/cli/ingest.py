"""`teston ingest`: follow the live stream, or replay a recorded file to its end."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from ingestion.metrics import IngestMetrics
from ingestion.pipeline import IngestSummary
from ingestion.replay import REPLAY_BATCH_SIZE, replay_problem
from ingestion.sources import is_url
from teston.cli import wiring
from teston.cli.common import ingestion_failures_exit, read_settings
from teston.cli.progress import ReplayProgress
from teston.core import database
from teston.core.runtime import prompt_thread_switches, run_components, stop_on_signals
from teston.core.settings import Settings, parse_duration


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


@contextlib.contextmanager
def _unusable_source_exits() -> Iterator[None]:
    """A `--source` that can be neither followed nor replayed: one line on stderr and exit 2."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError) as exc:
        typer.secho(f"teston: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


async def _run_ingest(
    settings: Settings,
    url: str,
    *,
    source_spec: str,
    since: datetime | None,
    batch_size: int,
    metrics_port: int,
    show_progress: bool,
) -> tuple[IngestSummary, bool]:
    """The run's summary, and whether it was stopped (Ctrl-C) rather than reaching its source's end."""
    stop = asyncio.Event()
    metrics = IngestMetrics(CollectorRegistry())
    async with aiohttp.ClientSession() as session:
        source = wiring.event_source(settings, session, source_spec=source_spec, since=since, metrics=metrics)
        with contextlib.ExitStack() as stack:
            progress = (
                stack.enter_context(ReplayProgress(Console(stderr=True), source)) if show_progress else None
            )
            service = wiring.ingestion_service(
                settings,
                url,
                source,
                catalog=wiring.catalog(),
                metrics=metrics,
                since=since,
                batch_size=batch_size,
                metrics_port=metrics_port,
                on_progress=progress.update if progress is not None else None,
            )
            stack.enter_context(stop_on_signals(stop))
            stack.enter_context(prompt_thread_switches())
            await run_components([service], stop)
        return service.summary, stop.is_set()


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
    """Store recent changes: follow the live stream, or replay a file to its end (Ctrl-C flushes, exits 0).

    A replay exits 1 after storing what it could when the file is damaged (a gzip file cut short), and
    when the file holds no event at all (empty, binary, another format).
    """
    settings = read_settings()
    spec = source or settings.ingest.stream_url
    started_since = _parse_since(since)
    show_progress = (not is_url(spec)) and (progress if progress is not None else sys.stderr.isatty())
    with database.database_url(settings) as url:
        database.upgrade(url)
        with _unusable_source_exits(), ingestion_failures_exit():
            summary, stopped = asyncio.run(
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
    typer.echo(summary.describe())
    problem = None if is_url(spec) or stopped else replay_problem(Path(spec), summary)
    if problem is not None:
        typer.secho(f"teston: {problem}", err=True, fg="red")
        raise typer.Exit(1)
