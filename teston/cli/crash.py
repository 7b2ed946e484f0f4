"""The last resort of the command line: an unexpected error becomes one line, its trace goes to a log file."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import tempfile
import traceback
from pathlib import Path

import typer

from teston.cli.common import LOG_FORMAT, secrets_of
from teston.core import redaction
from teston.core.settings import SettingsError, load_settings

LOG_NAME = "teston.log"


def _log_dirs() -> list[Path]:
    """Where the trace may go: `$TESTON_HOME/logs`, else a directory of this user's in the temp dir."""
    dirs = []
    with contextlib.suppress(SettingsError):
        dirs.append(load_settings().home / "logs")
    dirs.append(Path(tempfile.gettempdir()) / f"teston-{os.getuid()}")
    return dirs


def configured_secrets() -> list[str]:
    """The secrets of the configuration, if it can be read."""
    try:
        return secrets_of(load_settings())
    except Exception:
        return []


def _write_trace(exc: BaseException, secrets: list[str]) -> Path | None:
    for directory in _log_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            handler = logging.handlers.RotatingFileHandler(
                directory / LOG_NAME, maxBytes=1_000_000, backupCount=1, encoding="utf-8"
            )
        except OSError:
            continue
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        redaction.install(handler, secrets)
        logger = logging.getLogger("teston.crash")
        logger.propagate = False  # the trace goes to the file; stderr gets one line
        logger.addHandler(handler)
        try:
            logger.error("unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
        finally:
            logger.removeHandler(handler)
            handler.close()
        return directory / LOG_NAME
    return None


def describe(exc: BaseException) -> str:
    """What went wrong, in a line: the file and the reason for an OS error, else the exception's message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}:{where}" if where else exc.strerror.lower()
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def report(exc: BaseException) -> None:
    """Print `teston: <what> (full trace in <file>)`; with LOG_LEVEL=DEBUG print the trace too."""
    secrets = configured_secrets()
    path = _write_trace(exc, secrets)
    where = f"full trace in {path}" if path else "no log file could be written"
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        trace = "".join(traceback.format_exception(exc))
        typer.echo(redaction.redact(trace, secrets), err=True, nl=False)
    typer.secho(f"teston: {redaction.redact(describe(exc), secrets)} ({where})", err=True, fg="red")
