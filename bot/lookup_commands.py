"""The lookups in the command core: `!recent`, `!stats` for one day, and `!setLang`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import queries
from bot.answers import (
    LEFT_OUT_COUNTED,
    TOP_PAGES_SHOWN,
    Absence,
    DayStats,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    RecentChanges,
)
from bot.command_reads import RecentKey, RecentReading, StatsKey
from bot.queries import DayReading
from bot.requests import Command, RecentRequest, Scope, SetLanguageRequest, StatsRequest, UsageError
from teston.core.wikis import Wiki

if TYPE_CHECKING:
    from bot.commands import CommandCore, Invoker

# The original bot's answer when nobody chose a language.
FALLBACK_LANGUAGE = "en"


async def answer_recent(core: CommandCore, request: RecentRequest, invoker: Invoker) -> RecentChanges:
    wiki = await _wiki_of(core, Command.RECENT, request.language, invoker)
    reading = await core.reads.recent.read(
        _recent_key(wiki.dbname, request), lambda: _read_recent_alone(core, wiki.dbname, request)
    )
    return RecentChanges(
        wiki=wiki,
        changes=reading.changes,
        count=request.count,
        include_bots=request.include_bots,
        include_categorize=request.include_categorize,
        asked=request.asked,
        newest_day=reading.newest_day,
        retention_days=None if reading.changes else core.retention_days,
        left_out=reading.left_out,
    )


async def _wiki_of(core: CommandCore, command: Command, language: str | None, invoker: Invoker) -> Wiki:
    """The wiki named (no connection needed), else the invoker's default, read on a connection of its own.

    The read itself then runs on a connection of its own too, as a kept answer's read again may run
    after the command that started it has its answer (`bot.read_cache`)."""
    if language is not None:
        return core.resolve(command, language)
    async with core.database.connection() as conn:
        await queries.limit_statement_time(conn, core.query_timeout)
        return await core.wiki_for(conn, command, None, invoker)


def _recent_key(wiki: str, request: RecentRequest) -> RecentKey:
    return RecentKey(wiki, request.count, request.include_bots, request.include_categorize)


async def _read_recent_alone(core: CommandCore, wiki: str, request: RecentRequest) -> RecentReading:
    async with core.database.connection() as conn:
        changes = await queries.latest_changes(
            conn,
            wiki,
            request.count,
            include_bots=request.include_bots,
            include_categorize=request.include_categorize,
        )
        if changes:
            return RecentReading(tuple(changes))
        # Nothing shown: the summary tables, kept after retention, say whether there ever was a change;
        # and maybe bot or category changes were left out: every stored change of the wiki is one of
        # those then, so counting the wiki's changes counts them.
        filtered = not (request.include_bots and request.include_categorize)
        newest_day, left_out = await queries.nothing_shown(
            conn, wiki, at_most=LEFT_OUT_COUNTED + 1 if filtered else 0
        )
        return RecentReading((), newest_day, left_out)


async def answer_stats(core: CommandCore, request: StatsRequest, invoker: Invoker) -> DayStats | NoStats:
    wiki = await _wiki_of(core, Command.STATS, request.language, invoker)
    key = StatsKey(wiki.dbname, request.day, TOP_PAGES_SHOWN)
    day = await core.reads.stats.read(key, lambda: _read_day_alone(core, key))
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
        is_today=request.day == core.today(),
    )


async def _read_day_alone(core: CommandCore, key: StatsKey) -> DayReading:
    async with core.database.connection() as conn:
        return await queries.read_day(conn, key.wiki, key.day, pages=key.pages)


async def answer_setlang(
    core: CommandCore, request: SetLanguageRequest, invoker: Invoker
) -> LanguageSet | LanguageDefaults:
    if request.language is None:
        async with core.database.connection() as conn:
            user, guild = await core.defaults(conn, invoker)
        return LanguageDefaults(
            user=user,
            guild=guild,
            effective=user or guild or core.catalog.resolve(FALLBACK_LANGUAGE),
            in_guild=invoker.guild_id is not None,
        )
    wiki = core.resolve(Command.SETLANG, request.language)
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
        async with core.database.connection() as conn:
            await queries.set_guild_language(conn, invoker.guild_id, wiki.dbname, invoker.user_id)
        return LanguageSet(wiki=wiki, scope=Scope.GUILD)
    if invoker.user_id is None:
        raise UsageError(
            Command.SETLANG, "Only a Discord user can have a default language.", missing=Scope.USER
        )
    async with core.database.connection() as conn:
        await queries.set_user_language(conn, invoker.user_id, wiki.dbname)
    return LanguageSet(wiki=wiki, scope=Scope.USER)
