"""The command core shared by Discord (prefix and slash) and `teston ask`: a request in, an answer out.

It parses, resolves languages with the wiki catalog, checks permissions and reads the database; it
knows nothing of Discord. Every failure becomes an answer (`Problem` for the user's mistakes,
`Failure` for ours), so no transport ever has to show a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, assert_never

import psycopg
from psycopg import AsyncConnection

from bot import charts, digest_store, queries, report_queries
from bot.answers import (
    LEFT_OUT_COUNTED,
    TOP_PAGES_SHOWN,
    Absence,
    Answer,
    Chart,
    DayStats,
    Digest,
    DigestList,
    DigestSet,
    DigestsRemoved,
    Failure,
    Help,
    LanguageDefaults,
    LanguageSet,
    NoChart,
    NoStats,
    Problem,
    RangeStats,
    RecentChanges,
    TopEntries,
)
from bot.argument_text import shown
from bot.arguments import parse_command
from bot.feeds.commands import answer_feed_request
from bot.metrics import BotMetrics
from bot.requests import (
    ChartRequest,
    Command,
    DigestRequest,
    DigestsRequest,
    FeedRequest,
    HelpRequest,
    RangeStatsRequest,
    RecentRequest,
    Request,
    Scope,
    SetLanguageRequest,
    StatsRequest,
    TopRequest,
    UndigestRequest,
    UnwatchRequest,
    UsageError,
    WatchesRequest,
    WatchRequest,
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
# A range's distinct editors and pages are counted over raw rows; past this share of the query timeout
# the reply says they could not be counted rather than failing as a whole.
DISTINCT_SHARE_OF_TIMEOUT = 0.5
# More digests than this in one server is a mistake, and each one is a post every day.
MAX_DIGESTS_PER_GUILD = 10


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
        if isinstance(request, HelpRequest):
            return Help(request.command)
        if isinstance(request, RecentRequest):
            return await self._recent(request, invoker)
        if isinstance(request, StatsRequest):
            return await self._stats(request, invoker)
        if isinstance(request, RangeStatsRequest):
            return await self._range_stats(request, invoker)
        if isinstance(request, ChartRequest):
            return await self._chart(request, invoker)
        if isinstance(request, TopRequest):
            return await self._top(request, invoker)
        if isinstance(request, DigestRequest | UndigestRequest | DigestsRequest):
            return await self._digests(request, invoker)
        if isinstance(request, FeedRequest):
            return await answer_feed_request(
                request, invoker, database=self.database, catalog=self.catalog, resolve=self.resolve
            )
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
            # Nothing shown, yet maybe bot or category changes were left out: every stored change of the
            # wiki is one of those then, so counting the wiki's changes counts them.
            filtered = not (request.include_bots and request.include_categorize)
            left_out = (
                await queries.count_changes(conn, wiki.dbname, at_most=LEFT_OUT_COUNTED + 1)
                if filtered and not changes
                else 0
            )
        return RecentChanges(
            wiki=wiki,
            changes=tuple(changes),
            count=request.count,
            include_bots=request.include_bots,
            include_categorize=request.include_categorize,
            asked=request.asked,
            newest_day=newest_day,
            retention_days=None if changes else self.retention_days,
            left_out=left_out,
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
                raise UsageError(
                    Command.SETLANG,
                    "A server's default can only be set inside that server.",
                    missing=Scope.GUILD,
                )
            if not invoker.can_manage_guild:
                raise UsageError(
                    Command.SETLANG,
                    "Only members with the Manage Server permission can set the server's default.",
                )
            async with self.database.connection() as conn:
                await queries.set_guild_language(conn, invoker.guild_id, wiki.dbname, invoker.user_id)
            return LanguageSet(wiki=wiki, scope=Scope.GUILD)
        if invoker.user_id is None:
            raise UsageError(
                Command.SETLANG, "Only a Discord user can have a default language.", missing=Scope.USER
            )
        async with self.database.connection() as conn:
            await queries.set_user_language(conn, invoker.user_id, wiki.dbname)
        return LanguageSet(wiki=wiki, scope=Scope.USER)

    # --- ranges, charts, top lists ----------------------------------------------------------------

    async def _range_stats(self, request: RangeStatsRequest, invoker: Invoker) -> RangeStats:
        async with self.database.connection() as conn:
            await queries.limit_statement_time(conn, self.query_timeout)
            wiki = await self._wiki_for(conn, Command.STATS, request.language, invoker)
            reading = await report_queries.range_days(conn, wiki.dbname, request.first, request.last)
            figures = report_queries.summed(reading.days)
            counted = None
            if figures.changes:
                counted = await report_queries.distinct_counts(
                    conn,
                    wiki.dbname,
                    request.first,
                    request.last,
                    seconds=self.query_timeout * DISTINCT_SHARE_OF_TIMEOUT,
                )
        # Exact only if the raw table still holds every change the summaries counted (retention drops
        # exported days; the Parquet lake keeps them, but the bot reads PostgreSQL only).
        exact = counted is not None and counted.rows == figures.changes
        if counted is not None and exact:
            figures = dataclasses.replace(
                figures, distinct_editors=counted.editors, distinct_pages=counted.pages
            )
        return RangeStats(
            wiki=wiki,
            first=request.first,
            last=request.last,
            figures=figures,
            days_counted=len(reading.days),
            partial_days=reading.partial_days,
            incomplete_days=reading.incomplete_days,
            distinct_counted=exact or not figures.changes,
            retention_days=self.retention_days,
        )

    async def _chart(self, request: ChartRequest, invoker: Invoker) -> Chart | NoChart:
        async with self.database.connection() as conn:
            await queries.limit_statement_time(conn, self.query_timeout)
            if request.languages:
                wikis = tuple(self.resolve(Command.CHART, language) for language in request.languages)
            else:
                wikis = (await self._wiki_for(conn, Command.CHART, None, invoker),)
            if len({wiki.dbname for wiki in wikis}) < len(wikis):
                raise UsageError(Command.CHART, "Two of those languages name the same wiki.")
            rows = await report_queries.daily_counts(
                conn, [wiki.dbname for wiki in wikis], request.first, request.last
            )
        if not rows:
            return NoChart(wikis=wikis, first=request.first, last=request.last)
        if request.hourly:
            names = {wiki.dbname: wiki.server_name if len(wikis) == 1 else wiki.label for wiki in wikis}
            data = charts.hourly_by_wiki(names, rows, request.first)
        elif len(wikis) == 1:
            data = charts.daily_by_kind(wikis[0].server_name, rows, request.first, request.last)
        else:
            names = {wiki.dbname: wiki.label for wiki in wikis}
            data = charts.daily_by_wiki(names, rows, request.first, request.last)
        # Drawing takes up to a second or two of CPU: off the event loop, so the bot keeps answering.
        png = await asyncio.to_thread(charts.render_png, data)
        return Chart(
            wikis=wikis, first=request.first, last=request.last, hourly=request.hourly, data=data, png=png
        )

    async def _top(self, request: TopRequest, invoker: Invoker) -> TopEntries:
        async with self.database.connection() as conn:
            await queries.limit_statement_time(conn, self.query_timeout)
            wiki = await self._wiki_for(conn, Command.TOP, request.language, invoker)
            entries, rollup = await report_queries.top_entries(conn, wiki.dbname, request.day, request.kind)
        return TopEntries(
            wiki=wiki, day=request.day, kind=request.kind, entries=tuple(entries), rollup=rollup
        )

    # --- digests ----------------------------------------------------------------------------------

    def digest_of(self, stored: digest_store.StoredDigest) -> Digest:
        """A stored digest as answers show it."""
        return Digest(
            id=stored.id,
            channel_id=stored.channel_id,
            wiki=self.catalog.by_dbname(stored.wiki),
            dbname=stored.wiki,
            at=stored.post_at,
            last_day=stored.last_day,
        )

    async def _digests(
        self, request: DigestRequest | UndigestRequest | DigestsRequest, invoker: Invoker
    ) -> DigestSet | DigestsRemoved | DigestList:
        command = (
            Command.DIGEST
            if isinstance(request, DigestRequest)
            else Command.UNDIGEST
            if isinstance(request, UndigestRequest)
            else Command.DIGESTS
        )
        if invoker.channel_id is None:
            raise UsageError(command, "Digests are posted in a Discord channel; use this command there.")
        channel = invoker.channel_id
        if isinstance(request, DigestsRequest):
            async with self.database.connection() as conn:
                stored = await digest_store.digests_of(conn, invoker.guild_id, channel)
            return DigestList(tuple(map(self.digest_of, stored)))
        if invoker.guild_id is not None and not invoker.can_manage_channels:
            raise UsageError(command, "Only members with the Manage Channels permission can change digests.")
        if isinstance(request, UndigestRequest):
            wiki = None if request.language is None else self.resolve(command, request.language)
            async with self.database.connection() as conn:
                removed = await digest_store.remove_digests(
                    conn,
                    guild_id=invoker.guild_id,
                    channel_id=channel,
                    digest_id=request.digest_id,
                    wiki=None if wiki is None else wiki.dbname,
                )
            if not removed:
                what = f"number {request.digest_id}" if wiki is None else f"of '{wiki.label}' in this channel"
                raise UsageError(command, f"There is no digest {what}.")
            return DigestsRemoved(tuple(map(self.digest_of, removed)))
        wiki = self.resolve(command, request.language)
        async with self.database.connection() as conn, conn.transaction():
            existing = await digest_store.digests_of(conn, invoker.guild_id, channel)
            is_new = not any(d.channel_id == channel and d.wiki == wiki.dbname for d in existing)
            if is_new and len(existing) >= MAX_DIGESTS_PER_GUILD:
                raise UsageError(command, f"A server has at most {MAX_DIGESTS_PER_GUILD} digests.")
            stored_digest, created = await digest_store.set_digest(
                conn,
                guild_id=invoker.guild_id,
                channel_id=channel,
                wiki=wiki.dbname,
                post_at=request.at,
                created_by=invoker.user_id,
                created_at=self.clock(),
            )
        return DigestSet(self.digest_of(stored_digest), created=created)
