"""`teston db`: the schema migrations and the connection URL, and stopping the embedded server."""

from __future__ import annotations

import typer

from teston.cli.common import read_settings
from teston.core import database
from teston.core.embedded import EmbeddedPostgres


def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the schema migrations."""
    settings = read_settings()
    from alembic.util import CommandError

    with database.database_url(settings) as url:
        try:
            database.upgrade(url, revision)
        except CommandError as exc:
            shipped = database.head_revision()
            typer.secho(f"teston: {exc} (the newest revision is {shipped}, or use head)", err=True, fg="red")
            raise typer.Exit(2) from None
        typer.echo(f"database at revision {database.current_revision(url)}")


def db_url() -> None:
    """Print the connection URL in use (usable by psql); starts the embedded server if needed."""
    settings = read_settings()
    if settings.database.url:
        typer.echo(settings.database.url)
        return
    server = EmbeddedPostgres(settings.embedded_data_dir)
    url = server.start()
    server.keep_running()
    if server.started_here:
        typer.echo("embedded PostgreSQL started; it keeps running until `teston db stop`", err=True)
    typer.echo(url)


def db_stop(
    force: bool = typer.Option(False, "--force", help="Stop it even while other TestON processes use it."),
) -> None:
    """Stop the embedded PostgreSQL server if it is running (refused while TestON processes use it)."""
    settings = read_settings()
    if settings.database.url:
        typer.echo("a database URL is configured; TestON does not manage that server", err=True)
        raise typer.Exit(1)
    server = EmbeddedPostgres(settings.embedded_data_dir)
    running = server.is_running()
    users = server.other_users() if running else []
    if users and not force:
        named = ", ".join(str(user) for user in users)
        typer.secho(
            f"teston: the embedded PostgreSQL is in use by {named}; stop those first, or use --force"
            " (they would stop with their last batch not committed)",
            err=True,
            fg="red",
        )
        raise typer.Exit(1)
    server.stop()
    typer.echo("embedded PostgreSQL stopped" if running else "embedded PostgreSQL was not running")
