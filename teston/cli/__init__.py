"""The `teston` command: a thin layer that reads settings once and calls the library.

This module builds the Typer app from the command groups in the modules beside it (their order here is
the order `teston --help` lists them), turns database failures and every `TestonError` into one line,
and every other error into one line naming the log file that holds its trace.
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
import typer

from teston import __version__
from teston.cli import ask, crash, db, feed, health, ingest, rollup, service
from teston.core.embedded import EmbeddedPostgresError
from teston.core.errors import TestonError
from teston.core.redaction import redact

__all__ = ["app", "main"]

# Tracebacks never show local variables: they could hold a database password.
app = typer.Typer(
    help="TestON: Wikipedia's live edit stream, answered in Discord.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The PostgreSQL database: migrations and connection.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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


db_app.command("upgrade")(db.db_upgrade)
db_app.command("url")(db.db_url)
db_app.command("stop")(db.db_stop)
app.command("ingest")(ingest.ingest)
app.command("up")(service.up)
app.command("sink")(service.sink)
app.command("rollup")(rollup.rollup_command)
app.command("scheduler")(service.scheduler)
app.command("ask")(ask.ask)
app.command("bot")(service.bot_command)
app.command("health")(health.health)
app.add_typer(feed.feed_app, name="feed")


def main() -> None:
    try:
        app()
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        cause = getattr(exc, "orig", None) or exc  # Alembic's engine wraps the psycopg error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        typer.secho(
            f"teston: cannot use PostgreSQL ({redact(reason, crash.configured_secrets())}); check DB_ADDR /"
            " DATABASE_URL, or unset them to use the embedded server",
            err=True,
            fg="red",
        )
        raise SystemExit(1) from None
    except EmbeddedPostgresError as exc:
        typer.secho(f"teston: the embedded PostgreSQL failed: {redact(str(exc))}", err=True, fg="red")
        raise SystemExit(1) from None
    except TestonError as exc:
        # A situation to resolve, not a fault to debug: its message says what happened, in one line.
        message = " ".join(str(exc).split())
        typer.secho(f"teston: {redact(message, crash.configured_secrets())}", err=True, fg="red")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.secho("teston: interrupted", err=True, fg="red")
        raise SystemExit(130) from None
    except Exception as exc:
        # Whatever else escapes is a fault, not a situation to explain: one line, the trace in a log file.
        crash.report(exc)
        raise SystemExit(1) from None
