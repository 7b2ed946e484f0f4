"""The command core shared by Discord (prefix and slash) and `teston ask`: a request in, an answer out.

It parses, resolves languages with the wiki catalog, checks permissions and reads the database; it
knows nothing of Discord. Every failure becomes an answer (`Problem` for the user's mistakes,
`Failure` for ours), so no transport ever has to show a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection

from bot import queries
from bot.answers import (
    TOP_PAGES_SHOWN,
    Absence,
    Answer,
    DayStats,
    Failure,
    Help,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    Problem,
    RecentChanges,
)
from bot.arguments import (
    Command,
    HelpRequest,
    RecentRequest,
    Request,
    Scope,
    SetLanguageRequest,
    StatsRequest,
    UsageError,
    parse_command,
    shown,
)
from teston.wikis import UnknownWiki, Wiki, WikiCatalog

log = logging.getLogger(__name__)

# The original bot's answer when nobody chose a language.
FALLBACK_LANGUAGE = "en"
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

    def today(self) -> date:
        return self.clock().astimezone(UTC).date()

    async def answer_text(self, text: str, invoker: Invoker) -> Answer:
        """Answer a whole command line such as `!stats 2025-02-04 en`."""
        try:
            request = parse_command(text, prefix=self.prefix, today=self.today(), also=self.also_accepted)
        except UsageError as exc:
            return Problem(exc.problem, exc.command)
        return await self.answer(request, invoker)

    async def answer(self, request: Request, invoker: Invoker) -> Answer:
        """Answer a parsed request (from text or from a slash command's options)."""
        try:
            async with asyncio.timeout(self.query_timeout):
                return await self._answer(request, invoker)
        except UsageError as exc:
            return Problem(exc.problem, exc.command)
        except (psycopg.Error, OSError, TimeoutError):
            log.exception("command %s failed on the database", type(request).__name__)
            return Failure(DATABASE_TROUBLE)

    async def _answer(self, request: Request, invoker: Invoker) -> Answer:
        if isinstance(request, HelpRequest):
            return Help(request.command)
        if isinstance(request, RecentRequest):
            return await self._recent(request, invoker)
        if isinstance(request, StatsRequest):
            return await self._stats(request, invoker)
        return await self._setlang(request, invoker)

    def resolve(self, command: Command, text: str) -> Wiki:
        """The wiki a language argument names, or a `UsageError` suggesting near matches."""
        try:
            return self.catalog.resolve(text)
        except UnknownWiki as exc:
            problem = f"Unknown language {shown(text)}."
            if exc.suggestions:
                problem += " Did you mean " + ", ".join(f"'{s}'" for s in exc.suggestions) + "?"
            raise UsageError(command, problem) from None

    async def _wiki_for(
        self, conn: AsyncConnection[Any], command: Command, language: str | None, invoker: Invoker
    ) -> Wiki:
        if language is not None:
            return self.resolve(command, language)
        user, guild = await self._defaults(conn, invoker)
        return user or guild or self.catalog.resolve(FALLBACK_LANGUAGE)

    async def _defaults(
        self, conn: AsyncConnection[Any], invoker: Invoker
    ) -> tuple[Wiki | None, Wiki | None]:
        """The user's and the guild's stored defaults, lookup order user → guild (→ `en`)."""
        if invoker.user_id is None and invoker.guild_id is None:
            return None, None
        user, guild = await queries.language_defaults(conn, invoker.user_id, invoker.guild_id)
        # A stored wiki the catalog no longer lists is ignored rather than shown as an error.
        return (
            self.catalog.by_dbname(user) if user else None,
            self.catalog.by_dbname(guild) if guild else None,
        )

    async def _recent(self, request: RecentRequest, invoker: Invoker) -> RecentChanges:
        async with self.database.connection() as conn:
            await queries.limit_statement_time(conn, self.query_timeout)
            wiki = await self._wiki_for(conn, Command.RECENT, request.language, invoker)
            changes = await queries.latest_changes(
                conn,
                wiki.dbname,
                request.count,
                include_bots=request.include_bots,
                include_categorize=request.include_categorize,
            )
            # Nothing stored: the summary tables, kept after retention, say whether there ever was.
            newest_day = None if changes else await queries.newest_counted_day(conn, wiki.dbname)
        return RecentChanges(
            wiki=wiki,
            changes=tuple(changes),
            count=request.count,
            include_bots=request.include_bots,
            include_categorize=request.include_categorize,
            asked=request.asked,
            newest_day=newest_day,
            retention_days=None if changes else self.retention_days,
        )

    async def _stats(self, request: StatsRequest, invoker: Invoker) -> DayStats | NoStats:
        async with self.database.connection() as conn:
            await queries.limit_statement_time(conn, self.query_timeout)
            wiki = await self._wiki_for(conn, Command.STATS, request.language, invoker)
            day = await queries.read_day(conn, wiki.dbname, request.day, pages=TOP_PAGES_SHOWN)
        if day.figures is not None:
            return DayStats(
                wiki=wiki,
                day=request.day,
                figures=day.figures,
                top_pages=tuple(day.top_pages),
                rollup=day.rollup,
            )
        if day.rollup is not None:
            absence = Absence.NONE_SEEN
        elif day.has_arrivals:
            absence = Absence.NOT_ROLLED_UP
        else:
            absence = Absence.NOT_COLLECTED
        return NoStats(
            wiki=wiki,
            day=request.day,
            absence=absence,
            rollup=day.rollup,
            is_today=request.day == self.today(),
        )

    async def _setlang(self, request: SetLanguageRequest, invoker: Invoker) -> LanguageSet | LanguageDefaults:
        if request.language is None:
            async with self.database.connection() as conn:
                user, guild = await self._defaults(conn, invoker)
            return LanguageDefaults(
                user=user,
                guild=guild,
                effective=user or guild or self.catalog.resolve(FALLBACK_LANGUAGE),
                in_guild=invoker.guild_id is not None,
            )
        wiki = self.resolve(Command.SETLANG, request.language)
        if request.scope is Scope.GUILD:
            if invoker.guild_id is None:
                raise UsageError(Command.SETLANG, "A server's default can only be set inside that server.")
            if not invoker.can_manage_guild:
                raise UsageError(
                    Command.SETLANG,
                    "Only members with the Manage Server permission can set the server's default.",
                )
            async with self.database.connection() as conn:
                await queries.set_guild_language(conn, invoker.guild_id, wiki.dbname, invoker.user_id)
            return LanguageSet(wiki=wiki, scope=Scope.GUILD)
        if invoker.user_id is None:
            raise UsageError(Command.SETLANG, "Only a Discord user can have a default language.")
        async with self.database.connection() as conn:
            await queries.set_user_language(conn, invoker.user_id, wiki.dbname)
        return LanguageSet(wiki=wiki, scope=Scope.USER)
