"""The bot as the CLI runs it: one command answered on a terminal, or the Discord bot as a component.

The CLI (the composition root, `teston/cli/wiring.py`) reads the settings and builds the pools, the
catalog and the LISTEN connection factory, and passes them here; nothing is built or read from the
environment in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import date
from typing import Any

from discord.ext import commands
from psycopg_pool import AsyncConnectionPool

from bot.answers import Answer, Help, Problem
from bot.arguments import parse_command
from bot.client import DEFAULT_COOLDOWN, Backoff, BotUnavailable, run_bot, shards_of
from bot.command_reads import CommandReads
from bot.commands import DEFAULT_RETENTION_DAYS, CommandCore, Invoker, utc_now
from bot.feeds.poster import FeedPoster
from bot.metrics import BotMetrics
from bot.notifications import Listen, Notifications
from bot.requests import HelpRequest, UsageError
from teston.core.settings import Settings
from teston.core.wikis import WikiCatalog

log = logging.getLogger(__name__)

# A help text that names the variable, no secret.
NO_TOKEN_HELP = (
    "DISCORD_TOKEN is not set, so the Discord bot is not running. To get a token: "  # noqa: S105
    "https://discord.com/developers/applications → New Application → Bot → Reset Token; put it in "
    "DISCORD_TOKEN (environment or .env) and invite the bot with the applications.commands and bot "
    'scopes. Meanwhile any command works on the terminal: teston ask "!stats 2021-08-27 en", '
    'teston ask "!recent en 5".'
)


# `teston ask` takes the original bot's `!` as well as COMMAND_PREFIX: scripts and docs write `!stats`.
ORIGINAL_PREFIX = "!"


def answer_without_database(text: str, *, prefix: str = "!", today: date | None = None) -> Answer | None:
    """`teston ask`'s answer when the command needs no database (help, or unusable arguments); else None."""
    try:
        request = parse_command(text, prefix=prefix, today=today or utc_now().date(), also=(ORIGINAL_PREFIX,))
    except UsageError as error:
        return Problem(error.problem, error.command)
    return Help(request.command) if isinstance(request, HelpRequest) else None


async def answer_once(
    pool: AsyncConnectionPool,
    catalog: WikiCatalog,
    text: str,
    invoker: Invoker,
    *,
    prefix: str = "!",
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> Answer:
    """Answer one command line on the (open) `pool`, as the bot would."""
    core = CommandCore(
        database=pool,
        catalog=catalog,
        prefix=prefix,
        also_accepted=(ORIGINAL_PREFIX,),
        retention_days=retention_days,
    )
    return await core.answer_text(text, invoker)


class DiscordBotService:
    """The Discord bot on the pool it is given, as a `teston.core.runtime.Component`.

    It opens the (unopened) pool when it starts and closes it when it stops; `listen` opens the live
    feeds' LISTEN connection (none: the feeds only poll).

    Discord being unreachable is waited out (see `bot.client.run_bot`). When the bot cannot run at all
    (a refused token, a bug), what happens depends on whether it is the whole process: under
    `teston up` it logs one error and stays down while ingestion and the scheduler carry on; alone
    (`teston bot`, `essential=True`) its `wait` raises, so the process ends.
    """

    name = "discord bot"

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        catalog: WikiCatalog,
        *,
        listen: Listen | None = None,
        essential: bool = False,
        cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
        backoff: Backoff | None = None,
        metrics: BotMetrics | None = None,
        **bot_options: Any,
    ) -> None:
        if settings.discord.token is None:
            raise ValueError(NO_TOKEN_HELP)
        self._settings = settings
        self._essential = essential
        self._pool = pool
        self._catalog = catalog
        self._listen = listen
        self._cooldown = cooldown
        self._backoff = backoff
        self.metrics = metrics
        self._bot_options = bot_options
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        await self._pool.open()
        reads = CommandReads()
        if self.metrics is not None:
            self.metrics.count_reads(reads)
        core = CommandCore(
            database=self._pool,
            catalog=self._catalog,
            prefix=self._settings.discord.command_prefix,
            retention_days=self._settings.analytics.retention_days,
            metrics=self.metrics,
            reads=reads,
        )
        # Feeds share the bot's pool. New changes wake them, and drop the answers the core keeps, through
        # one connection of their own (LISTEN); without it the feeds poll and the core keeps nothing.
        feeds = FeedPoster(
            self._pool,
            self._catalog,
            prefix=self._settings.discord.command_prefix,
            metrics=self.metrics,
            owns=shards_of(self._settings.discord).owns,
        )
        notifications = None if self._listen is None else Notifications(self._listen, [feeds, reads])
        self._task = asyncio.create_task(self._run(core, feeds, notifications), name="discord bot")

    async def _run(self, core: CommandCore, feeds: FeedPoster, notifications: Notifications | None) -> None:
        following = None
        if notifications is not None:
            following = asyncio.create_task(notifications.run(), name="bot: notifications")
        try:
            await run_bot(
                core,
                self._settings.discord,
                cooldown=self._cooldown,
                backoff=self._backoff,
                feeds=feeds,
                **self._bot_options,
            )
        except BotUnavailable as error:
            if self._essential:
                raise
            log.error("%s The rest of TestON keeps running.", error)
        except Exception:
            if self._essential:
                raise
            log.exception("the Discord bot failed; the rest of TestON keeps running without it")
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following

    async def wait(self) -> None:
        """Return when the bot has stopped (after `stop`, quietly); raise if it failed and is essential."""
        if self._task is None:
            return
        await asyncio.wait({self._task})
        if not self._task.cancelled():
            self._task.result()
        if not self._essential:
            # Down for good, but the rest of `teston up` goes on: this component ends when it is stopped.
            await self._stopped.wait()

    async def stop(self) -> None:
        # Cancelling `run_bot` leaves its `async with bot` block, which closes the gateway and HTTP session.
        self._stopped.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pool.close()
