"""The command core shared by Discord (prefix and slash) and `teston ask`: a request in, an answer out.

It parses, resolves languages with the wiki catalog, and hands each request to its family's handlers
(`lookup_commands`, `report_commands`, `digest_commands`, `bot.feeds.commands`), which check permissions
and read the database; it knows nothing of Discord. Every failure becomes an answer (`Problem` for the
user's mistakes, `Failure` for ours), so no transport ever has to show a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, assert_never

import psycopg
from psycopg import AsyncConnection

from bot import queries
from bot.answers import Answer, Failure, Help, Problem
from bot.argument_text import shown
from bot.arguments import parse_command
from bot.command_reads import CommandReads
from bot.digest_commands import answer_digest_request
from bot.feeds.commands import answer_feed_request
from bot.lookup_commands import FALLBACK_LANGUAGE, answer_recent, answer_setlang, answer_stats
from bot.metrics import BotMetrics
from bot.report_commands import answer_chart, answer_range_stats, answer_top
from bot.requests import (
    ChartRequest,
    Command,
    DigestRequest,
    DigestsRequest,
    HelpRequest,
    RangeStatsRequest,
    RecentRequest,
    Request,
    SetLanguageRequest,
    StatsRequest,
    TopRequest,
    UndigestRequest,
    UnwatchRequest,
    UsageError,
    WatchesRequest,
    WatchRequest,
)
from teston.core.wikis import UnknownWiki, Wiki, WikiCatalog

log = logging.getLogger(__name__)

# A reply that takes longer than this is worse than an apology; Discord also drops interactions
# that are not answered (or deferred) within 3 seconds.
DEFAULT_QUERY_TIMEOUT = 10.0
DATABASE_TROUBLE = "TestON cannot reach its database right now; please try again in a minute."
# RETENTION_DAYS' default; the composition root passes the setting in force.
DEFAULT_RETENTION_DAYS = 30


class ConnectionSource(Protocol):
    """Where connections come from: a `psycopg_pool.AsyncConnectionPool` in production and tests."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Invoker:
    """Who runs a command and where: enough for defaults and the Manage Server check."""

    user_id: int | None = None
    guild_id: int | None = None
    can_manage_guild: bool = False
    # Where a feed started with `!watch` posts, and whether the invoker may start one there.
    channel_id: int | None = None
    can_manage_channels: bool = False


def command_of(request: Request) -> Command:
    """The command a parsed request belongs to."""
    match request:
        case RecentRequest():
            return Command.RECENT
        case StatsRequest():
            return Command.STATS
        case SetLanguageRequest():
            return Command.SETLANG
        case RangeStatsRequest():
            return Command.STATS
        case ChartRequest():
            return Command.CHART
        case TopRequest():
            return Command.TOP
        case DigestRequest():
            return Command.DIGEST
        case UndigestRequest():
            return Command.UNDIGEST
        case DigestsRequest():
            return Command.DIGESTS
        case HelpRequest():
            return Command.HELP
        case WatchRequest():
            return Command.WATCH
        case UnwatchRequest():
            return Command.UNWATCH
        case WatchesRequest():
            return Command.WATCHES
        case _:
            assert_never(request)


@dataclass(frozen=True, slots=True)
class CommandCore:
    """Answers every command; built once by the composition root and shared by all transports."""

    database: ConnectionSource
    catalog: WikiCatalog
    prefix: str = "!"
    # Other prefixes a command line may start with (`teston ask` also takes the original `!`).
    also_accepted: tuple[str, ...] = ()
    clock: Callable[[], datetime] = utc_now
    query_timeout: float = DEFAULT_QUERY_TIMEOUT
    retention_days: int = DEFAULT_RETENTION_DAYS
    metrics: BotMetrics | None = None
    # What `!recent` and `!stats` read, kept while the bot follows the database's notices.
    reads: CommandReads = field(default_factory=CommandReads)

    def today(self) -> date:
        return self.clock().astimezone(UTC).date()

    async def answer_text(self, text: str, invoker: Invoker) -> Answer:
        """Answer a whole command line such as `!stats 2025-02-04 en`."""
        started = time.perf_counter()
        try:
            request = parse_command(text, prefix=self.prefix, today=self.today(), also=self.also_accepted)
        except UsageError as exc:
            problem = Problem(exc.problem, exc.command)
            if self.metrics is not None:
                self.metrics.observe_answer(exc.command, problem, time.perf_counter() - started)
            return problem
        return await self.answer(request, invoker)

    async def answer(self, request: Request, invoker: Invoker) -> Answer:
        """Answer a parsed request (from text or from a slash command's options)."""
        started = time.perf_counter()
        answer = await self._answer_safely(request, invoker)
        if self.metrics is not None:
            self.metrics.observe_answer(command_of(request), answer, time.perf_counter() - started)
        return answer

    async def _answer_safely(self, request: Request, invoker: Invoker) -> Answer:
        try:
            async with asyncio.timeout(self.query_timeout):
                return await self._answer(request, invoker)
        except UsageError as exc:
            return Problem(exc.problem, exc.command, exc.missing)
        except (psycopg.Error, OSError, TimeoutError):
            log.exception("command %s failed on the database", type(request).__name__)
            return Failure(DATABASE_TROUBLE)

    async def _answer(self, request: Request, invoker: Invoker) -> Answer:
        match request:
            case HelpRequest():
                return Help(request.command)
            case RecentRequest():
                return await answer_recent(self, request, invoker)
            case StatsRequest():
                return await answer_stats(self, request, invoker)
            case SetLanguageRequest():
                return await answer_setlang(self, request, invoker)
            case RangeStatsRequest():
                return await answer_range_stats(self, request, invoker)
            case ChartRequest():
                return await answer_chart(self, request, invoker)
            case TopRequest():
                return await answer_top(self, request, invoker)
            case DigestRequest() | UndigestRequest() | DigestsRequest():
                return await answer_digest_request(self, request, invoker)
            case WatchRequest() | UnwatchRequest() | WatchesRequest():
                return await answer_feed_request(
                    request, invoker, database=self.database, catalog=self.catalog, resolve=self.resolve
                )
            case _:
                assert_never(request)

    def resolve(self, command: Command, text: str) -> Wiki:
        """The wiki a language argument names, or a `UsageError` suggesting near matches."""
        try:
            return self.catalog.resolve(text)
        except UnknownWiki as exc:
            problem = f"Unknown language {shown(text)}."
            if exc.suggestions:
                problem += " Did you mean " + ", ".join(f"'{s}'" for s in exc.suggestions) + "?"
            raise UsageError(command, problem) from None

    async def wiki_for(
        self, conn: AsyncConnection[Any], command: Command, language: str | None, invoker: Invoker
    ) -> Wiki:
        """The wiki a command reads: the one named, else the invoker's default (user → server → `en`)."""
        if language is not None:
            return self.resolve(command, language)
        user, guild = await self.defaults(conn, invoker)
        return user or guild or self.catalog.resolve(FALLBACK_LANGUAGE)

    async def defaults(self, conn: AsyncConnection[Any], invoker: Invoker) -> tuple[Wiki | None, Wiki | None]:
        """The user's and the guild's stored defaults, lookup order user → guild (→ `en`)."""
        if invoker.user_id is None and invoker.guild_id is None:
            return None, None
        user, guild = await queries.language_defaults(conn, invoker.user_id, invoker.guild_id)
        # A stored wiki the catalog no longer lists is ignored rather than shown as an error.
        return (
            self.catalog.by_dbname(user) if user else None,
            self.catalog.by_dbname(guild) if guild else None,
        )
