"""The Discord shell: hybrid commands (`!recent` and `/recent`) that hand their input to the command core.

Nothing here decides what a command means. Text commands are re-read from the message with the pure
parser, so the original bot's syntax (`!recent 5`, `!recent en 20`) is parsed exactly as `teston ask`
parses it; slash commands arrive as typed options and are checked by the same functions.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import argument_text, lookup_arguments, report_arguments, subscription_arguments
from bot.answers import Answer, Failure, Problem
from bot.commands import CommandCore, Invoker
from bot.messages import Message, Reply
from bot.metrics import FAILURE, PROBLEM, RATE_LIMITED, UNKNOWN_COMMAND
from bot.rendering import discord_reply, language_choices
from bot.requests import Command, DigestsRequest, Request, UsageError, WatchesRequest

log = logging.getLogger(__name__)

# Discord shows "The application did not respond" after 3 seconds; a slower answer is deferred first.
DEFER_AFTER = 2.0
NO_MENTIONS = discord.AllowedMentions.none()
SOMETHING_BROKE = "Something went wrong answering that; it has been logged. Please try again later."

HelpTopic = Literal[
    "recent",
    "stats",
    "setlang",
    "chart",
    "top",
    "digest",
    "undigest",
    "digests",
    "help",
    "watch",
    "unwatch",
    "watches",
]
TopListName = Literal["pages", "editors"]


def _cooldown_of(ctx: commands.Context[Any]) -> commands.Cooldown | None:
    # Called once per new user (the bucket key); each user needs a Cooldown of their own.
    cog = ctx.cog
    if not isinstance(cog, WikiCommands) or cog.cooldown is None:
        return None
    return cog.cooldown.copy()


class SlowDownNotices:
    """Who has been told to slow down, so a rate-limited user gets one public notice per cooldown.

    Every further text command within the same cooldown is ignored silently: a reply to each one would
    let a user flood the channel through the bot, which is what the cooldown is there to stop.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._quiet_until: dict[int, float] = {}

    def should_notify(self, user_id: int, retry_after: float) -> bool:
        """True the first time `user_id` hits the cooldown; False until `retry_after` seconds have passed."""
        now = self._clock()
        # Forget cooldowns that are over, so the map only ever holds users rate-limited right now.
        self._quiet_until = {user: until for user, until in self._quiet_until.items() if until > now}
        if user_id in self._quiet_until:
            return False
        self._quiet_until[user_id] = now + retry_after
        return True


def invoker_of(ctx: commands.Context[Any]) -> Invoker:
    """Who runs the command, where, and whether they may change the server's default."""
    guild_id = ctx.guild.id if ctx.guild else ctx.interaction.guild_id if ctx.interaction else None
    # Discord computes an interaction's permissions; for a message, the member's roles in the channel.
    can_manage = guild_id is not None and ctx.permissions.manage_guild
    return Invoker(
        user_id=ctx.author.id,
        guild_id=guild_id,
        can_manage_guild=can_manage,
        channel_id=ctx.channel.id if ctx.channel else None,
        can_manage_channels=guild_id is not None and ctx.permissions.manage_channels,
    )


class WikiCommands(commands.Cog, name="TestON"):
    """`recent`, `stats`, `setlang` and `help`, each as a text and a slash command."""

    def __init__(
        self,
        core: CommandCore,
        cooldown: commands.Cooldown | None,
        *,
        slow_down_notices: SlowDownNotices | None = None,
    ) -> None:
        self.core = core
        self.cooldown = cooldown
        self.slow_down_notices = slow_down_notices or SlowDownNotices()

    # --- the commands ---------------------------------------------------------------------------
    # discord.py 2.7's `hybrid_command` overloads resolve to `Never` under mypy 2, hence the ignores.

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="recent", description="The newest changes of a wiki.")  # type: ignore[arg-type]
    @app_commands.describe(
        language="Wiki language code (en, de, zh-hans, wikidata…); default: yours, the server's, or en",
        count="How many changes, 1 to 100 (default 10)",
        bots="Include changes made by bots",
        categorize="Include category membership changes",
    )
    async def recent(
        self,
        ctx: commands.Context[Any],
        language: str | None = None,
        count: app_commands.Range[int, 1, 100] | None = None,
        bots: bool | None = None,
        categorize: bool | None = None,
    ) -> None:
        await self._run(
            ctx,
            lambda: lookup_arguments.recent_request(
                language, count, include_bots=bool(bots), include_categorize=bool(categorize)
            ),
        )

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="stats", description="A wiki's figures for one UTC day.")  # type: ignore[arg-type]
    @app_commands.rename(day="date")
    @app_commands.describe(
        day="The UTC day, as yyyy-mm-dd (or today, yesterday)",
        language="Wiki language code; default: yours, the server's, or en",
    )
    async def stats(self, ctx: commands.Context[Any], day: str, language: str | None = None) -> None:
        await self._run(ctx, lambda: lookup_arguments.stats_request(day, language, today=self.core.today()))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(  # type: ignore[arg-type]
        name="setlang", description="Set your default language, or the server's."
    )
    @app_commands.describe(
        language="Wiki language code (en, de, zh-hans, wikidata…); leave out to see the defaults",
        server="Set this server's default instead of yours (needs Manage Server)",
    )
    async def setlang(
        self, ctx: commands.Context[Any], language: str | None = None, server: bool | None = None
    ) -> None:
        await self._run(ctx, lambda: lookup_arguments.setlang_request(language, for_guild=bool(server)))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="help", description="TestON's commands and how to use them.")  # type: ignore[arg-type]
    @app_commands.describe(command="One command to explain")
    async def help(self, ctx: commands.Context[Any], command: HelpTopic | None = None) -> None:
        await self._run(ctx, lambda: lookup_arguments.help_request(command))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="chart", description="A chart of a wiki's changes (PNG).")  # type: ignore[arg-type]
    @app_commands.describe(
        languages="Up to 5 wiki codes separated by commas (en,de); default: yours, the server's, or en",
        period="from..to (2025-02-01..2025-02-28), the last N days (7d; default 30d), or one day per hour",
    )
    async def chart(
        self, ctx: commands.Context[Any], languages: str | None = None, period: str | None = None
    ) -> None:
        await self._run(
            ctx, lambda: report_arguments.chart_request(languages, period, today=self.core.today())
        )

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="top", description="A day's most edited pages or most active editors.")  # type: ignore[arg-type]
    @app_commands.rename(day="date", kind="list")
    @app_commands.describe(
        language="Wiki language code; default: yours, the server's, or en",
        day="The UTC day, as yyyy-mm-dd (default today)",
        kind="pages (default) or editors",
    )
    async def top(
        self,
        ctx: commands.Context[Any],
        language: str | None = None,
        day: str | None = None,
        kind: TopListName | None = None,
    ) -> None:
        await self._run(
            ctx, lambda: report_arguments.top_request(language, day, kind, today=self.core.today())
        )

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(  # type: ignore[arg-type]
        name="digest", description="Post a wiki's figures and chart here every day (Manage Channels)."
    )
    @app_commands.rename(at="time")
    @app_commands.describe(
        language="Wiki language code (en, de, zh-hans, wikidata…)",
        at="When to post, HH:MM UTC (default 00:30)",
    )
    async def digest(self, ctx: commands.Context[Any], language: str, at: str | None = None) -> None:
        await self._run(ctx, lambda: subscription_arguments.digest_request(language, at))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(  # type: ignore[arg-type]
        name="undigest", description="Stop a daily digest (Manage Channels)."
    )
    @app_commands.rename(target="digest")
    @app_commands.describe(target="The digest's number (see /digests) or its language in this channel")
    async def undigest(self, ctx: commands.Context[Any], target: str) -> None:
        await self._run(ctx, lambda: subscription_arguments.undigest_request(target))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="digests", description="This server's daily digests.")  # type: ignore[arg-type]
    async def digests(self, ctx: commands.Context[Any]) -> None:
        await self._run(ctx, DigestsRequest)

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(  # type: ignore[arg-type]
        name="watch", description="Post a wiki's changes in this channel as they happen."
    )
    @app_commands.describe(
        language="Wiki language code (en, de, zh-hans, wikidata…)",
        filters="type=edit|new|log|categorize ns=0,4 bots minor=no min=500 title=Prefix user=Name anon",
    )
    async def watch(self, ctx: commands.Context[Any], language: str, *, filters: str | None = None) -> None:
        await self._run(ctx, lambda: subscription_arguments.watch_request(language, filters))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="unwatch", description="Stop one of this server's feeds.")  # type: ignore[arg-type]
    @app_commands.rename(feed_id="id")
    @app_commands.describe(feed_id="The feed's number, as !watches shows it")
    async def unwatch(self, ctx: commands.Context[Any], feed_id: int) -> None:
        await self._run(ctx, lambda: subscription_arguments.unwatch_request(feed_id))

    @commands.dynamic_cooldown(_cooldown_of, commands.BucketType.user)
    @commands.hybrid_command(name="watches", description="This server's feeds and their state.")  # type: ignore[arg-type]
    async def watches(self, ctx: commands.Context[Any]) -> None:
        await self._run(ctx, WatchesRequest)

    @recent.autocomplete("language")
    @stats.autocomplete("language")
    @setlang.autocomplete("language")
    @top.autocomplete("language")
    @digest.autocomplete("language")
    @watch.autocomplete("language")
    async def _language_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=name, value=value)
            for name, value in language_choices(self.core.catalog, current)
        ]

    # --- the shell ------------------------------------------------------------------------------

    async def _run(self, ctx: commands.Context[Any], slash_request: Callable[[], Request]) -> None:
        """Answer through the core: text commands re-parse their message, slash ones use their options."""
        invoker = invoker_of(ctx)
        if ctx.interaction is None:
            work = self.core.answer_text(self._command_text(ctx), invoker)
        else:
            try:
                request = slash_request()
            except UsageError as exc:
                self._count(ctx, PROBLEM)
                await self._send(ctx, Problem(exc.problem, exc.command))
                return
            work = self.core.answer(request, invoker)
        await self._send(ctx, await self._in_time(ctx, work))

    @staticmethod
    def _command_text(ctx: commands.Context[Any]) -> str:
        prefix = ctx.prefix or ""
        return ctx.message.content[len(prefix) :] if ctx.message.content.startswith(prefix) else ""

    async def _in_time(self, ctx: commands.Context[Any], work: Coroutine[Any, Any, Answer]) -> Answer:
        task = asyncio.ensure_future(work)
        if ctx.interaction is not None:
            done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER)
            if not done:
                await ctx.defer()
        return await task

    async def _send(self, ctx: commands.Context[Any], answer: Answer) -> None:
        prefix = self.core.prefix
        reply = discord_reply(answer, prefix=prefix, slash=ctx.interaction is not None)
        await send_reply(ctx, reply)

    # --- errors ---------------------------------------------------------------------------------

    async def cog_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        """Every error ends as one friendly line; only unexpected ones are logged with a traceback."""
        answer: Answer
        if isinstance(error, commands.CommandOnCooldown):
            self._count(ctx, RATE_LIMITED)
            # Slash commands must be answered, and privately; text commands get one notice per cooldown.
            if ctx.interaction is None and not self.slow_down_notices.should_notify(
                ctx.author.id, error.retry_after
            ):
                return
            answer = Failure(f"Slow down a little: try again in {max(error.retry_after, 1):.0f} s.")
        elif isinstance(error, commands.UserInputError) or (
            isinstance(error, commands.HybridCommandError)
            and isinstance(error.original, app_commands.TransformerError)
        ):
            # discord.py could not read an argument; the pure parser says what is wrong and how to fix it.
            answer = await self._explain(ctx, error)
        elif isinstance(error, commands.CheckFailure):
            answer = Failure("That command cannot be used here.")
        else:
            log.error("command %s failed", ctx.command, exc_info=error)
            self._count(ctx, FAILURE)
            answer = Failure(SOMETHING_BROKE)
        try:
            await self._send(ctx, answer)
        except discord.HTTPException:
            log.exception("could not send the error reply for %s", ctx.command)

    def _count(self, ctx: commands.Context[Any], outcome: str) -> None:
        if self.core.metrics is not None:
            self.core.metrics.count_outcome(ctx.command.name if ctx.command else UNKNOWN_COMMAND, outcome)

    async def _explain(self, ctx: commands.Context[Any], error: Exception) -> Answer:
        if ctx.interaction is None:
            # The text is the whole truth for a text command: answer it exactly as `teston ask` would.
            return await self.core.answer_text(self._command_text(ctx), invoker_of(ctx))
        log.info("argument error in /%s: %s", ctx.command, error)
        command = argument_text.command_named(ctx.command.name) if ctx.command else None
        return Problem("Those options cannot be used.", command or Command.HELP)


async def send_reply(ctx: commands.Context[Any], reply: Reply) -> None:
    """Send each message of a reply; never pings anyone, and slash-only notices stay private."""
    for index, message in enumerate(reply.messages):
        embeds = [discord.Embed.from_dict(embed.to_dict()) for embed in message.embeds]
        content = message.content or None
        extra: dict[str, Any] = {"files": files_of(message)} if message.attachments else {}
        if ctx.interaction is not None:
            await ctx.send(
                content=content, embeds=embeds, ephemeral=reply.private, allowed_mentions=NO_MENTIONS, **extra
            )
        elif index == 0:
            # A reply to the command, still sent if its message was deleted meanwhile.
            reference = ctx.message.to_reference(fail_if_not_exists=False)
            await ctx.send(
                content=content,
                embeds=embeds,
                reference=reference,
                mention_author=False,
                allowed_mentions=NO_MENTIONS,
                **extra,
            )
        else:
            await ctx.send(content=content, embeds=embeds, allowed_mentions=NO_MENTIONS, **extra)


def files_of(message: Message) -> list[discord.File]:
    """A message's attachments as uploads (discord.py reads each file once, so they are made per send)."""
    return [discord.File(io.BytesIO(a.data), filename=a.filename) for a in message.attachments]
