"""`teston feed preview`: try a live feed's filter on a stored day, on the terminal."""

from __future__ import annotations

import asyncio
from datetime import date

import psycopg
import typer

from bot.feeds.preview import Preview, preview_day, watch_arguments
from bot.requests import UsageError, WatchRequest
from teston.cli import wiring
from teston.cli.ask import _schema_is_current
from teston.cli.common import read_settings
from teston.core import database
from teston.core.wikis import UnknownWiki, WikiCatalog

feed_app = typer.Typer(help="Live feeds (!watch): try a filter without Discord.", no_args_is_help=True)


@feed_app.command("preview")
def preview(
    arguments: str = typer.Argument(..., help='What !watch would take, e.g. "en type=edit ns=0 min=500".'),
    day: str = typer.Option(..., "--date", help="The UTC day of stored changes, YYYY-MM-DD."),
    limit: int | None = typer.Option(None, "--limit", min=0, help="Print at most this many posts."),
) -> None:
    """Print `N changes match`, then the posts the feed would have made for that day's stored changes."""
    settings = read_settings()
    try:
        request = watch_arguments(arguments)
        chosen = date.fromisoformat(day)
    except UsageError as error:
        typer.secho(f"teston: {error.problem}", err=True, fg="red")
        raise typer.Exit(2) from None
    except ValueError:
        typer.secho(f"teston: --date {day!r} is not a day; write it as YYYY-MM-DD", err=True, fg="red")
        raise typer.Exit(2) from None
    catalog = wiring.catalog()
    try:
        catalog.resolve(request.language)
    except UnknownWiki:
        typer.secho(f"teston: unknown language {request.language!r}", err=True, fg="red")
        raise typer.Exit(2) from None
    with database.database_url(settings) as url:
        if not _schema_is_current(url):
            raise typer.Exit(1)
        result = asyncio.run(_preview(url, catalog, request, chosen))
    typer.echo("\n".join(result.lines(limit)))


async def _preview(url: str, catalog: WikiCatalog, request: WatchRequest, day: date) -> Preview:
    async with await psycopg.AsyncConnection.connect(database.in_utc(url)) as conn:
        return await preview_day(conn, catalog, request, day)
