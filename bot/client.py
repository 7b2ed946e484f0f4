"""The discord.py client: intents, prefix, the cog, slash command sync, and running with a token.

Text commands need the privileged Message Content intent. When Discord refuses it (the switch in the
developer portal is off), TestON reconnects without it: slash commands keep working, and mentioning
the bot (`@TestON recent`) still works because Discord always delivers messages that mention the bot.

Discord being unreachable (no network, a 5xx answer, a dropped gateway) is waited out: `run_bot`
tries again with exponential backoff and jitter, one log line per attempt. A session that is up is
kept up by discord.py itself (it resumes it); `run_bot` sees only what discord.py gives up on. A wrong
token cannot get better by retrying, so it ends `run_bot` with `BotUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.argument_text import without_format_characters
from bot.cog import NO_MENTIONS, WikiCommands
from bot.commands import CommandCore
from bot.digests import DIGEST_INTERVAL, DigestPoster
from bot.feeds.discord_channels import DiscordChannels
from bot.feeds.poster import FeedPoster
from bot.shards import ShardPlan
from teston.core.errors import BotError
from teston.core.settings import DiscordSettings

log = logging.getLogger(__name__)

# Per user: a few commands in a burst, then one every few seconds.
DEFAULT_COOLDOWN = commands.Cooldown(rate=5, per=15.0)
ENABLE_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent, so text commands (!recent …) only work when they "
    "mention the bot; slash commands work. To enable text commands: "
    "https://discord.com/developers/applications → your application → Bot → Privileged Gateway Intents "
    "→ turn on Message Content Intent, then restart TestON."
)


# A message that names the variable, no secret.
BAD_TOKEN = (
    "Discord refused the token in DISCORD_TOKEN (it is wrong, or was reset), so the Discord bot is not "  # noqa: S105
    "running. Put the bot's current token in DISCORD_TOKEN (https://discord.com/developers/applications "
    "→ your application → Bot → Reset Token) and restart TestON."
)
INTENTS_REFUSED = (
    "Discord refused the bot's gateway intents even without Message Content, so the Discord bot is not "
    "running. Check the application's Privileged Gateway Intents at "
    "https://discord.com/developers/applications and restart TestON."
)
# Gateway close codes that retrying cannot fix (https://discord.com/developers/docs/topics/opcodes-and-status-codes):
# 4004 authentication failed; 4010–4013 invalid shard, sharding required, invalid API version or intents;
# 4014 disallowed intents (PrivilegedIntentsRequired, handled on its own).
AUTHENTICATION_FAILED = 4004
PERMANENT_CLOSE_CODES = frozenset({AUTHENTICATION_FAILED, 4010, 4011, 4012, 4013, 4014})


class BotUnavailable(BotError):
    """The bot cannot run until someone changes its configuration; the message says what to change."""


@dataclass(frozen=True)
class Backoff:
    """How long to wait before the nth attempt to reach Discord: doubling from `first` to `longest`."""

    first: float = 2.0
    longest: float = 300.0
    # A number in [0, 1): random by default, fixed in tests.
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, …)."""
        base = min(self.longest, self.first * 2 ** min(attempt - 1, 32))
        # Half fixed, half random ("equal jitter"): bots restarting together spread out, none retries at once.
        return base / 2 + base / 2 * self.jitter()


def is_transient(error: BaseException) -> bool:
    """Whether trying again later may succeed: network errors, Discord's 5xx and 429, gateway drops."""
    if isinstance(error, discord.ConnectionClosed):
        return error.code not in PERMANENT_CLOSE_CODES
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, aiohttp.ClientError | OSError | TimeoutError | discord.GatewayNotFound)


def describe(error: BaseException) -> str:
    """One line naming an error, for a log line without a traceback."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def shards_of(settings: DiscordSettings) -> ShardPlan:
    """This process's shards from `SHARD_COUNT` and `SHARD_IDS`."""
    return ShardPlan(count=settings.shard_count, ids=settings.shard_ids)


class WikiBot(commands.Bot):
    """The bot: one cog of commands over the shared command core."""

    def __init__(
        self,
        core: CommandCore,
        settings: DiscordSettings,
        *,
        message_content: bool = True,
        cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
        digest_interval: float | None = DIGEST_INTERVAL,
        feeds: FeedPoster | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        self.shard_plan = shards_of(settings)
        if self.shard_plan.sharded:
            options = {"shard_count": self.shard_plan.count, "shard_ids": self.shard_plan.ids, **options}
        # No message cache: nothing here looks up a message seen earlier (no edit, delete or reaction
        # handlers), and discord.py would otherwise hold the last 1,000 messages, the feeds' posts among them.
        options = {"max_messages": None, **options}
        super().__init__(
            command_prefix=commands.when_mentioned_or(settings.command_prefix),
            intents=intents,
            help_command=None,  # `help` is one of the cog's hybrid commands
            case_insensitive=True,  # `!setLang` is how the original bot spelled it
            allowed_mentions=NO_MENTIONS,
            **options,
        )
        self.core = core
        self.sync_guild_id = settings.sync_guild_id
        self.cooldown = cooldown
        # Set once connected; a later failure then starts the backoff afresh.
        self.was_ready = False
        # The daily digests need Discord, so the bot process posts them (None: this bot posts none).
        self.digest_poster = (
            None
            if digest_interval is None
            else DigestPoster(core, self, interval=digest_interval, owns=self.shard_plan.owns)
        )
        self._digest_task: asyncio.Task[None] | None = None
        self.feeds = feeds
        self._feeds_task: asyncio.Task[None] | None = None

    async def process_commands(self, message: discord.Message, /) -> None:
        # Read a command as `teston ask` does: without invisible format characters, or discord.py would
        # look for a command named `recent\u200b` in a pasted `!recent\u200b en 5` and ignore it.
        message.content = without_format_characters(message.content)
        await super().process_commands(message)

    async def setup_hook(self) -> None:
        await self.add_cog(WikiCommands(self.core, self.cooldown))
        await self.sync_slash_commands()
        if self.digest_poster is not None:
            self._digest_task = asyncio.create_task(self.digest_poster.run(), name="daily digests")
        if self.feeds is not None:
            # Posting needs only the REST session, which login has opened.
            self._feeds_task = asyncio.create_task(self._post_feeds(self.feeds), name="live feeds")

    async def _post_feeds(self, feeds: FeedPoster) -> None:
        try:
            await feeds.run(DiscordChannels(self))
        except Exception:
            # Commands keep working; the feeds resume, from their cursors, when the bot restarts.
            log.exception("live feeds stopped")

    async def close(self) -> None:
        if self._digest_task is not None:
            self._digest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._digest_task
        if self._feeds_task is not None and not self._feeds_task.done():
            self._feeds_task.cancel()
            with contextlib.suppress(BaseException):
                await self._feeds_task
        await super().close()

    async def sync_slash_commands(self) -> None:
        """Register the slash commands: with one server at once if configured, else globally."""
        try:
            if self.sync_guild_id:
                guild = discord.Object(id=self.sync_guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d slash commands to server %s", len(synced), self.sync_guild_id)
            else:
                synced = await self.tree.sync()
                log.info(
                    "synced %d slash commands globally (they may take up to an hour to appear)", len(synced)
                )
        except discord.HTTPException as exc:
            # The bot still answers text commands, and previously synced slash commands keep working.
            log.warning("could not sync slash commands: %s", exc)

    async def on_ready(self) -> None:
        self.was_ready = True
        if self.core.metrics is not None:
            self.core.metrics.connected(len(self.guilds))
        log.info(
            "connected to Discord as %s in %d servers (%s)",
            self.user,
            len(self.guilds),
            self.shard_plan.describe(),
        )

    async def on_resumed(self) -> None:
        if self.core.metrics is not None:
            self.core.metrics.connected(len(self.guilds))

    async def on_disconnect(self) -> None:
        if self.core.metrics is not None:
            self.core.metrics.disconnected()

    async def on_command_error(
        self, context: commands.Context[Any], exception: commands.CommandError, /
    ) -> None:
        # Unknown commands are ignored: the prefix may be shared with other bots in the server.
        # Errors of TestON's own commands are answered by the cog.
        if isinstance(exception, commands.CommandNotFound) or context.cog is not None:
            return
        log.error("command error outside TestON's commands", exc_info=exception)


class ShardedWikiBot(WikiBot, commands.AutoShardedBot):
    """The bot on shards `SHARD_IDS` of `SHARD_COUNT`: Discord sends it only those shards' guilds."""


def wiki_bot(core: CommandCore, settings: DiscordSettings, **options: Any) -> WikiBot:
    """The bot for the settings: sharded with `SHARD_COUNT`, else one unsharded client."""
    cls = ShardedWikiBot if settings.shard_count is not None else WikiBot
    return cls(core, settings, **options)


async def run_bot(
    core: CommandCore,
    settings: DiscordSettings,
    *,
    cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
    backoff: Backoff | None = None,
    **options: Any,
) -> None:
    """Run the bot until it is closed or cancelled, waiting out Discord being unreachable.

    Falls back to no Message Content if Discord refuses it; raises `BotUnavailable` when the token
    is refused, and any error that is neither transient nor expected as it is.
    """
    if settings.token is None:
        raise ValueError("DISCORD_TOKEN is not set")
    token = settings.token.get_secret_value()
    backoff = backoff or Backoff()
    message_content = True
    failures = 0
    while True:
        # A fresh client each time: a closed discord.py client cannot be started again.
        bot = wiki_bot(core, settings, message_content=message_content, cooldown=cooldown, **options)
        try:
            await _run(bot, token)
            return
        except discord.PrivilegedIntentsRequired:
            if not message_content:
                raise BotUnavailable(INTENTS_REFUSED) from None
            log.warning(ENABLE_MESSAGE_CONTENT)
            message_content = False
            continue
        except discord.LoginFailure:
            raise BotUnavailable(BAD_TOKEN) from None
        except discord.ConnectionClosed as error:
            if error.code == AUTHENTICATION_FAILED:
                raise BotUnavailable(BAD_TOKEN) from None
            if not is_transient(error):
                raise
            failure: BaseException = error
        except Exception as error:
            if not is_transient(error):
                raise
            failure = error
        failures = 1 if bot.was_ready else failures + 1
        delay = backoff.delay(failures)
        log.warning(
            "cannot reach Discord (attempt %d: %s); trying again in %.1f s",
            failures,
            describe(failure),
            delay,
        )
        await asyncio.sleep(delay)


async def _run(bot: WikiBot, token: str) -> None:
    try:
        async with bot:
            # `start` (not `run`): logging is configured by TestON, and the token is never passed to a logger.
            await bot.start(token)
    finally:
        # However the client ended (closed, cancelled, refused), it is no longer on the gateway.
        if bot.core.metrics is not None:
            bot.core.metrics.disconnected()
