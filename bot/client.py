"""The discord.py client: intents, prefix, the cog, slash command sync, and running with a token.

Text commands need the privileged Message Content intent. When Discord refuses it (the switch in the
developer portal is off), TestON reconnects without it: slash commands keep working, and mentioning
the bot (`@TestON recent`) still works because Discord always delivers messages that mention the bot.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.ext import commands

from bot.cog import NO_MENTIONS, WikiCommands
from bot.commands import CommandCore
from teston.settings import DiscordSettings

log = logging.getLogger(__name__)

# Per user: a few commands in a burst, then one every few seconds.
DEFAULT_COOLDOWN = commands.Cooldown(rate=5, per=15.0)
ENABLE_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent, so text commands (!recent …) only work when they "
    "mention the bot; slash commands work. To enable text commands: "
    "https://discord.com/developers/applications → your application → Bot → Privileged Gateway Intents "
    "→ turn on Message Content Intent, then restart TestON."
)


class WikiBot(commands.Bot):
    """The bot: one cog of commands over the shared command core."""

    def __init__(
        self,
        core: CommandCore,
        settings: DiscordSettings,
        *,
        message_content: bool = True,
        cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
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

    async def setup_hook(self) -> None:
        await self.add_cog(WikiCommands(self.core, self.cooldown))
        await self.sync_slash_commands()

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
        log.info("connected to Discord as %s in %d servers", self.user, len(self.guilds))

    async def on_command_error(
        self, context: commands.Context[Any], exception: commands.CommandError, /
    ) -> None:
        # Unknown commands are ignored: the prefix may be shared with other bots in the server.
        # Errors of TestON's own commands are answered by the cog.
        if isinstance(exception, commands.CommandNotFound) or context.cog is not None:
            return
        log.error("command error outside TestON's commands", exc_info=exception)


async def run_bot(
    core: CommandCore,
    settings: DiscordSettings,
    *,
    cooldown: commands.Cooldown | None = DEFAULT_COOLDOWN,
    **options: Any,
) -> None:
    """Run the bot until it is closed or cancelled; falls back to no Message Content if refused."""
    if settings.token is None:
        raise ValueError("DISCORD_TOKEN is not set")
    token = settings.token.get_secret_value()
    try:
        await _run(WikiBot(core, settings, message_content=True, cooldown=cooldown, **options), token)
    except discord.PrivilegedIntentsRequired:
        log.warning(ENABLE_MESSAGE_CONTENT)
        await _run(WikiBot(core, settings, message_content=False, cooldown=cooldown, **options), token)


async def _run(bot: WikiBot, token: str) -> None:
    async with bot:
        # `start` (not `run`): logging is configured by TestON, and the token is never passed to a logger.
        await bot.start(token)
