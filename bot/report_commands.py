"""The reports in the command core: `!stats` over a range of days, `!chart` and `!top`."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from bot import charts, queries, report_queries
from bot.answers import Chart, NoChart, RangeStats, TopEntries
from bot.requests import ChartRequest, Command, RangeStatsRequest, TopRequest, UsageError

if TYPE_CHECKING:
    from bot.commands import CommandCore, Invoker

# A range's distinct editors and pages are counted over raw rows; past this share of the query timeout
# the reply says they could not be counted rather than failing as a whole.
DISTINCT_SHARE_OF_TIMEOUT = 0.5


async def answer_range_stats(core: CommandCore, request: RangeStatsRequest, invoker: Invoker) -> RangeStats:
    async with core.database.connection() as conn:
        await queries.limit_statement_time(conn, core.query_timeout)
        wiki = await core.wiki_for(conn, Command.STATS, request.language, invoker)
        reading = await report_queries.range_days(conn, wiki.dbname, request.first, request.last)
        figures = report_queries.summed(reading.days)
        counted = None
        if figures.changes:
            counted = await report_queries.distinct_counts(
                conn,
                wiki.dbname,
                request.first,
                request.last,
                seconds=core.query_timeout * DISTINCT_SHARE_OF_TIMEOUT,
            )
    # Exact only if the raw table still holds every change the summaries counted (retention drops
    # exported days; the Parquet lake keeps them, but the bot reads PostgreSQL only).
    exact = counted is not None and counted.rows == figures.changes
    if counted is not None and exact:
        figures = dataclasses.replace(figures, distinct_editors=counted.editors, distinct_pages=counted.pages)
    return RangeStats(
        wiki=wiki,
        first=request.first,
        last=request.last,
        figures=figures,
        days_counted=len(reading.days),
        partial_days=reading.partial_days,
        incomplete_days=reading.incomplete_days,
        distinct_counted=exact or not figures.changes,
        retention_days=core.retention_days,
    )


async def answer_chart(core: CommandCore, request: ChartRequest, invoker: Invoker) -> Chart | NoChart:
    async with core.database.connection() as conn:
        await queries.limit_statement_time(conn, core.query_timeout)
        if request.languages:
            wikis = tuple(core.resolve(Command.CHART, language) for language in request.languages)
        else:
            wikis = (await core.wiki_for(conn, Command.CHART, None, invoker),)
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


async def answer_top(core: CommandCore, request: TopRequest, invoker: Invoker) -> TopEntries:
    async with core.database.connection() as conn:
        await queries.limit_statement_time(conn, core.query_timeout)
        wiki = await core.wiki_for(conn, Command.TOP, request.language, invoker)
        entries, rollup = await report_queries.top_entries(conn, wiki.dbname, request.day, request.kind)
    return TopEntries(wiki=wiki, day=request.day, kind=request.kind, entries=tuple(entries), rollup=rollup)
