"""The bot as the CLI runs it: one command answered on a terminal, or the Discord bot as a component.

The CLI (the composition root) reads settings and passes them here; nothing is read from the
environment in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from discord.ext import commands
from psycopg_pool import AsyncConnectionPool

from bot.answers import Answer
from bot.client import DEFAULT_COOLDOWN, run_bot
from bot.commands import CommandCore, Invoker
from teston import database
from teston.settings import Settings
from teston.wikis import WikiCatalog

log = logging.getLogger(__name__)

NO_TOKEN_HELP = (
    "DISCORD_TOKEN is not set, so the Discord bot is not running. To get a token: "
    "https://discord.com/developers/applications → New Application → Bot → Reset Token; put it in "
    "DISCORD_TOKEN (environment or .env) and invite the bot with the applications.commands and bot "
    'scopes. Meanwhile any command works on the terminal: teston ask "!stats 2021-08-27 en", '
    'teston ask "!recent en 5".'
)


async def answer_once(url: str, text: str, invoker: Invoker, *, prefix: str = "!") -> Answer:
    """Answer one command line against the database at `url`, as the bot would."""
    async with AsyncConnectionPool(url, min_size=1, max_size=1, open=False, name="teston-ask") as pool:
        core = CommandCore(database=pool, catalog=WikiCatalog.load(), prefix=prefix)
        return await core.answer_text(text, invoker)


class DiscordBotService:
    """The Discord bot with its own connection pool, as a `teston.runtime.Component`."""

    name = "discord bot"

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        catalog: WikiCatalog | None = None,
        cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
        **bot_options: Any,
    ) -> None:
        if settings.discord.token is None:
            raise ValueError(NO_TOKEN_HELP)
        self._settings = settings
        self._pool = database.async_pool(url, settings.database, name="teston-bot")
        self._catalog = catalog or WikiCatalog.load()
        self._cooldown = cooldown
        self._bot_options = bot_options
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pool.open()
        core = CommandCore(
            database=self._pool,
            catalog=self._catalog,
            prefix=self._settings.discord.command_prefix,
            retention_days=self._settings.analytics.retention_days,
        )
        self._task = asyncio.create_task(
            run_bot(core, self._settings.discord, cooldown=self._cooldown, **self._bot_options),
            name="discord bot",
        )

    async def wait(self) -> None:
        """Return when the bot has stopped (after `stop`, quietly); raise if it failed."""
        if self._task is None:
            return
        await asyncio.wait({self._task})
        if not self._task.cancelled():
            self._task.result()

    async def stop(self) -> None:
        # Cancelling `run_bot` leaves its `async with bot` block, which closes the gateway and HTTP session.
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pool.close()
