"""`teston ask`: one bot command answered through the bot's own code, printed as plain text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import typer

from bot.answers import Answer, Failure, Problem
from bot.app import answer_once, answer_without_database
from bot.argument_text import without_format_characters
from bot.commands import Invoker
from bot.rendering import discord_reply, plain_text
from bot.report_rendering import attachments_of
from bot.requests import Scope
from teston.cli import wiring
from teston.cli.common import read_settings
from teston.core import database
from teston.core.settings import Settings


@contextlib.contextmanager
def _quiet_unless_asked(settings: Settings) -> Iterator[None]:
    """`ask` is for scripts: only warnings and errors on stderr, unless LOG_LEVEL says otherwise."""
    root = logging.getLogger()
    level = root.level
    if "log_level" not in settings.model_fields_set:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _schema_is_current(url: str) -> bool:
    """Whether the database is at this TestON's newest migration; says what to run when it is not."""
    current = database.current_revision(url)
    head = database.head_revision()
    if current == head:
        return True
    found = f"is at revision {current}" if current else "has no TestON tables yet"
    typer.secho(
        f"teston: the database {found}; this TestON needs revision {head}. "
        "Run `teston db upgrade` (or `teston up`, which upgrades it) first.",
        err=True,
        fg="red",
    )
    return False


def write_attachments(answer: Answer, directory: Path, *, prefix: str) -> list[Path]:
    """Write the files the answer's Discord reply would attach into `directory`; their paths."""
    files = attachments_of(discord_reply(answer, prefix=prefix))
    if files:
        directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        path = directory / file.filename
        path.write_bytes(file.data)
        written.append(path)
    return written


def _how_to_name(answer: Answer, text: str) -> str:
    """For a command that needs a Discord user or server the terminal did not name: the option to name it."""
    if not isinstance(answer, Problem) or answer.missing is None:
        return ""
    option, whose = ("--user-id", "user") if answer.missing is Scope.USER else ("--guild-id", "server")
    command = " ".join(without_format_characters(text).split())
    example = f"teston ask {option} <id> {shlex.quote(command)}"
    return f"\nOn the terminal, name the Discord {whose} with {option}: {example}"


async def _answer(url: str, text: str, invoker: Invoker, *, prefix: str, retention_days: int) -> Answer:
    async with wiring.ask_pool(url) as pool:
        return await answer_once(
            pool, wiring.catalog(), text, invoker, prefix=prefix, retention_days=retention_days
        )


def ask(
    text: str = typer.Argument(
        ..., help='A bot command, e.g. "!stats 2021-08-27 en" (the ! or COMMAND_PREFIX is optional).'
    ),
    user_id: int | None = typer.Option(
        None, "--user-id", help="Answer as this Discord user (their language)."
    ),
    guild_id: int | None = typer.Option(None, "--guild-id", help="Answer as in this Discord server."),
    attachments: str = typer.Option(
        ".",
        "--attachments",
        help="Directory for files a reply attaches (a chart's PNG); each file's path is printed.",
    ),
) -> None:
    """Run any bot command through the bot's own code and print the reply as plain text.

    It only reads (and `setLang` writes a default): the schema must be current (`teston db upgrade`).
    """
    settings = read_settings()
    prefix = settings.discord.command_prefix
    # Whoever runs the CLI administers the database, so server defaults may be set from here.
    invoker = Invoker(user_id=user_id, guild_id=guild_id, can_manage_guild=True, can_manage_channels=True)
    with _quiet_unless_asked(settings):
        # Help and mistakes are answered without starting or even reaching a database.
        answer = answer_without_database(text, prefix=prefix)
        if answer is None:
            with database.database_url(settings) as url:
                if not _schema_is_current(url):
                    raise typer.Exit(1)
                answer = asyncio.run(
                    _answer(
                        url, text, invoker, prefix=prefix, retention_days=settings.analytics.retention_days
                    )
                )
    typer.echo(plain_text(answer, prefix=prefix) + _how_to_name(answer, text))
    for path in write_attachments(answer, Path(attachments), prefix=prefix):
        typer.echo(str(path))
    if isinstance(answer, Problem):
        raise typer.Exit(2)
    if isinstance(answer, Failure):
        raise typer.Exit(1)
