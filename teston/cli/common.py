"""What every command shares: settings read once from the environment, and one-line failures."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import typer

from ingestion.bus.engine import BusUnavailable
from ingestion.resilient_writer import WriterStopped
from ingestion.stream_lock import StreamBusy
from teston.core import redaction
from teston.core.embedded import EmbeddedServerGone
from teston.core.monitoring import MetricsPortBusy
from teston.core.settings import Settings, SettingsError, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def read_settings() -> Settings:
    """The settings, or exit 2 with the invalid variable named; also sets up logging to stderr."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.secho(f"teston: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        redaction.install(handler, secrets_of(settings))
    return settings


def secrets_of(settings: Settings) -> list[str]:
    """The configured secrets that must never be printed: the Discord token and a database password."""
    secrets = [settings.discord.token.get_secret_value()] if settings.discord.token else []
    if settings.database.url:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(settings.database.url).get("password")
        if password:
            secrets.append(str(password))
    return secrets


@contextlib.contextmanager
def ingestion_failures_exit() -> Iterator[None]:
    """How an ingester's expected failures end `ingest` and `up`: one line on stderr and exit 1."""
    try:
        yield
    except WriterStopped as exc:
        typer.secho(f"teston: stopped with a batch not committed ({exc}); it will be resumed", err=True)
        raise typer.Exit(1) from None
    except BusUnavailable as exc:
        typer.secho(f"teston: the event bus is unavailable ({exc}); it will be resumed", err=True, fg="red")
        raise typer.Exit(1) from None
    except EmbeddedServerGone as exc:
        typer.secho(f"teston: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    except (StreamBusy, MetricsPortBusy) as exc:
        # Not a fault to debug but a situation to resolve (another ingester holds the stream): no traceback.
        message = " ".join(str(exc).split())
        typer.secho(f"teston: {message}", err=True, fg="red")
        raise typer.Exit(1) from None
