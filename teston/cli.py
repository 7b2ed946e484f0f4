"""The `teston` command: a thin layer that reads settings once and calls the library."""

from __future__ import annotations

import logging
import sys

import typer

from teston import __version__, database
from teston.embedded import EmbeddedPostgres
from teston.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="TestON: Wikipedia's live edit stream, answered in Discord.", no_args_is_help=True)
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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        typer.echo(f"teston {__version__}")
        raise typer.Exit()


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
    if server.started_here:
        typer.echo("embedded PostgreSQL started; `teston db stop` stops it", err=True)
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


def main() -> None:
    app()
