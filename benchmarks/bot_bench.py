"""Figures 10 and 11: `!chart` latency, and `!stats`/`!recent` with 200 commands in flight at once.

Data: the same 30 days as figures 4 and 5 (`query_bench.load`: `query_rows` raw rows, 10M at the default
size, generated inside PostgreSQL, with the summary tables filled per day), on a server of their own.

Every command line goes through `CommandCore.answer_text` (parsing, wiki resolution, the database) and
is rendered with `discord_reply`, as the Discord transport does, without sending anything. The pool is
the one `teston bot` builds for itself when it runs alone (`teston.cli.wiring.bot_pool`, default
settings: `DB_MAX_OPEN_CONNS`=10 less the feeds' LISTEN connection, so 9).

10. `!chart <wiki>` (the last 30 days, stacked by editor kind, one PNG) for the busiest wiki, and
    `!chart <5 wikis>` (one line per wiki) for the five busiest, interleaved call by call.
11. The bot as `teston bot` runs it: the command core follows the database's notices on a LISTEN
    connection of its own (`bot.notifications`), so it keeps `!recent` and `!stats` answers until a
    commit or a roll-up changes them (`bot.command_reads`), while the production ingester (`python -m
    teston ingest`, its own process) stores a synthetic stream of the same wikis at 50 events/s into
    the same database: each of its commits drops the kept `!recent` answers of the wikis it stored.
    After one untimed pass over every command line (the data is fresh from loading, its pages not yet
    read), rounds of two phases: the baseline, commands one at a time (each alone on the bot); then the
    load, `bot_concurrency` (200) tasks each sending its next command as soon as the last was answered,
    so that 200 are in flight at once, through the lines and from the first again until the round has
    lasted `bot_round_seconds` (10 s: kept answers are served fast enough that a single pass would end
    before the ingester's commits had changed any). The rounds begin once the ingester's commits flow.
    Then as many rounds of the same load on a core that keeps nothing
    (every command reads the database; identical reads in flight are still shared), the bot as it was
    before. The commands are the mix of figures 4 and 5 (`!stats <day> <wiki>` for a random day and
    wiki, `!recent` of the busiest wiki and of a random one); every round sends the same lines. A
    command's latency runs from its call to its rendered reply, the wait for a pooled connection
    included. The ratio is per round: p99 under load ÷ p99 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from benchmarks import live_stream, query_bench
from benchmarks.harness import Context, Figure, human_bytes, percentile, ratio

CHART_TARGET_MS = 300.0
LOAD_TARGET_MS = 50.0
CHART_WIKIS = 5
WARM_UP_CALLS = 3
# `teston bot` alone: DB_MAX_OPEN_CONNS (10) less the LISTEN connection of the feeds.
BOT_POOL_SIZE = 9
# The live stream's rate while figure 11 runs (events/s), as figure 7's.
LIVE_RATE = 50.0


def run(context: Context) -> list[Figure]:
    now = datetime.now(UTC)
    with context.postgres(query_bench.LOAD_SETTINGS) as server:
        data = query_bench.load(server.url, context, now)
        loaded = f"{data.rows:,} rows, {data.wikis} wikis, {human_bytes(data.bytes)}"
        context.log(f"bot: {loaded} loaded in {data.seconds:.0f}s")
        return asyncio.run(_measure(context, server.url, data))


def _busiest(url: str, count: int) -> list[str]:
    """The `count` wikis of the catalog with the most changes over the days loaded, busiest first."""
    from teston.core.wikis import WikiCatalog

    catalog = WikiCatalog.load()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT wiki FROM daily_wiki_stats GROUP BY wiki ORDER BY sum(changes) DESC LIMIT %s",
            (count * 3,),
        ).fetchall()
    labels = [wiki.label for (dbname,) in rows if (wiki := catalog.by_dbname(dbname)) is not None]
    return labels[:count]


def _commands(url: str, context: Context, busiest: str, calls: int, seed: int) -> list[str]:
    """The mix of figures 4 and 5: `!stats` of a random day and wiki, `!recent` busiest and random."""
    from teston.core.wikis import WikiCatalog

    catalog = WikiCatalog.load()
    with psycopg.connect(url) as conn:
        keys = conn.execute("SELECT day, wiki FROM daily_wiki_stats").fetchall()
    labelled = [(day, wiki.label) for day, dbname in keys if (wiki := catalog.by_dbname(dbname)) is not None]
    rng = random.Random(seed)
    lines: list[str] = []
    while len(lines) < calls:
        day, label = rng.choice(labelled)
        lines += [
            f"!stats {day.isoformat()} {label}",
            f"!recent {busiest}",
            f"!recent {rng.choice(labelled)[1]}",
        ]
    return lines[:calls]


async def _measure(context: Context, url: str, data: query_bench.LoadedData) -> list[Figure]:
    from bot.answers import Failure
    from bot.command_reads import CommandReads
    from bot.commands import CommandCore, Invoker
    from bot.rendering import discord_reply
    from teston.cli.wiring import bot_pool
    from teston.core.runtime import settle_heap
    from teston.core.settings import DatabaseSettings
    from teston.core.wikis import WikiCatalog

    size = context.size
    invoker = Invoker(user_id=1, guild_id=2)
    busiest = _busiest(url, CHART_WIKIS)
    async with bot_pool(url, DatabaseSettings(), max_size=BOT_POOL_SIZE) as pool:
        await pool.open(wait=True)
        catalog = WikiCatalog.load()
        core = CommandCore(database=pool, catalog=catalog, reads=CommandReads())
        # The same bot keeping nothing: its reads never follow notices.
        uncached = CommandCore(database=pool, catalog=catalog)

        failures: list[str] = []

        async def call(line: str, core: CommandCore = core) -> tuple[float, Any]:
            started = time.perf_counter()
            answer = await core.answer_text(line, invoker)
            discord_reply(answer, prefix=core.prefix)
            if isinstance(answer, Failure):
                failures.append(line)
            return (time.perf_counter() - started) * 1000, answer

        async def call_uncached(line: str) -> tuple[float, Any]:
            return await call(line, uncached)

        # Figure 10: the two charts, interleaved.
        charts = {"one": f"!chart {busiest[0]}", "five": f"!chart {','.join(busiest)}"}
        chart_ms: dict[str, list[float]] = {kind: [] for kind in charts}
        chart_answers: dict[str, Any] = {}
        for index in range(WARM_UP_CALLS + size.chart_calls):
            for kind, line in charts.items():
                elapsed, chart_answers[kind] = await call(line)
                if index >= WARM_UP_CALLS:
                    chart_ms[kind].append(elapsed)
        context.log(f"bot: charts measured ({size.chart_calls} calls each)")

        # Figure 11: rounds of (alone, under load), then of the load keeping nothing; the ingester writing.
        alone_calls = max(50, size.bot_calls // 4)
        lines = _commands(url, context, busiest[0], size.bot_calls, context.seed)
        runs = _Runs()
        async with _following(url, core.reads):
            with live_stream.LiveIngest(context, url, LIVE_RATE) as live:
                await live_stream.until(
                    lambda: core.reads.recent.following, "the bot following the database's notices"
                )
                # The ingester takes seconds to start: the rounds begin once its commits flow.
                await live_stream.until(lambda: live.stored() > 0, "the ingester storing events", 60.0)
                settle_heap()  # as `teston bot` does once its components have started
                # One untimed pass over every command line, 200 at a time: the 17 GB are fresh from
                # loading, and the first reads of a wiki's index pages would otherwise come from disk.
                await _under_load(call, lines, size.bot_concurrency)
                failures.clear()
                for round_number in range(size.bot_rounds):
                    rng = random.Random(context.seed + round_number)
                    sample = rng.sample(lines, min(alone_calls, len(lines)))
                    alone_round = [(await call(line))[0] for line in sample]
                    before = _counts(core)
                    loaded_round, seconds = await _under_load(
                        call, lines, size.bot_concurrency, size.bot_round_seconds
                    )
                    runs.served = [
                        a + b - c for a, b, c in zip(runs.served, _counts(core), before, strict=True)
                    ]
                    runs.add(alone_round, loaded_round, seconds)
                    context.log(
                        f"bot: round {round_number + 1}: p99 alone {runs.round_p99[-1][0]:.1f} ms, "
                        f"{size.bot_concurrency} in flight {runs.round_p99[-1][1]:.1f} ms"
                    )
                # The same load on the bot keeping nothing, after (between the rounds above, its minutes of
                # commits would pile up as answers to read again when the kept ones resume, which a bot
                # answering all the time reads as they come).
                for round_number in range(size.bot_rounds):
                    uncached_round, _ = await _under_load(
                        call_uncached, lines, size.bot_concurrency, size.bot_round_seconds
                    )
                    runs.uncached_p99.append(percentile(uncached_round, 99))
                    runs.uncached += uncached_round
                    context.log(
                        f"bot: keeping nothing, round {round_number + 1}: {size.bot_concurrency} in flight "
                        f"{runs.uncached_p99[-1]:.1f} ms"
                    )
    figure = _load_figure(context, data, runs)
    figure.values["failed"] = float(len(failures))
    figure.met = bool(figure.met) and not failures
    figure.notes += f" {len(failures)} commands answered with a failure (the query timeout) while timed."
    return [_chart_figure(context, chart_ms, chart_answers, busiest), figure]


@contextlib.asynccontextmanager
async def _following(url: str, reads: Any) -> AsyncIterator[None]:
    """The core's reads follow the database's notices on a LISTEN connection, as in `teston bot`."""
    from bot.notifications import Notifications
    from teston.cli.wiring import listen_connector

    task = asyncio.create_task(Notifications(listen_connector(url), [reads]).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _counts(core: Any) -> tuple[int, int, int, int]:
    """Commands served so far from kept answers, from answers kept from before a notice (within the
    grace), by joining a read in flight, by reading the database."""
    recent, stats = core.reads.recent.counts, core.reads.stats.counts
    return (
        recent.hits + stats.hits,
        recent.stale + stats.stale,
        recent.joined + stats.joined,
        recent.reads + stats.reads,
    )


@dataclass
class _Runs:
    """The timings of figure 11's rounds, in ms, and how the loaded commands were served."""

    alone: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    uncached: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)
    round_p99: list[tuple[float, float]] = field(default_factory=list)
    uncached_p99: list[float] = field(default_factory=list)
    loaded_seconds: float = 0.0
    served: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # kept, stale, joined, read

    def add(self, alone: list[float], loaded: list[float], seconds: float) -> None:
        self.alone += alone
        self.loaded += loaded
        self.loaded_seconds += seconds
        p99 = (percentile(alone, 99), percentile(loaded, 99))
        self.round_p99.append(p99)
        self.round_ratios.append(p99[1] / p99[0])


async def _under_load(
    call: Any, lines: Sequence[str], concurrency: int, seconds: float = 0.0
) -> tuple[list[float], float]:
    """Run every line with `concurrency` callers, each sending its next once answered, and the lines
    again from the first until `seconds` have passed; ms per call, and the seconds it took."""
    timings: list[float] = []
    started = time.perf_counter()

    def next_lines() -> Iterator[str]:
        for index in itertools.count():
            if index >= len(lines) and time.perf_counter() - started >= seconds:
                return
            yield lines[index % len(lines)]

    pending = next_lines()

    async def caller() -> None:
        for line in pending:
            timings.append((await call(line))[0])
            # Each command reaches the bot as its own gateway event: the next is sent once the reply is
            # in, through the event loop, even when the answer was ready without waiting (a kept one).
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(caller())
    return timings, time.perf_counter() - started


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "max_ms": max(samples) if samples else float("nan"),
        "calls": float(len(samples)),
    }


def _chart_figure(
    context: Context, chart_ms: dict[str, list[float]], answers: dict[str, Any], busiest: list[str]
) -> Figure:
    from bot.answers import Chart

    for kind, answer in answers.items():
        if not isinstance(answer, Chart) or not answer.png:
            raise RuntimeError(f"!chart ({kind}) did not answer with a chart: {answer!r}")
    one, five = _summary(chart_ms["one"]), _summary(chart_ms["five"])
    days = len(answers["one"].data.x_labels)
    return Figure(
        number=10,
        what=f"`!chart` through the command core, {days} days: one wiki ({busiest[0]}), {len(busiest)} wikis",
        result=(
            f"one wiki p99 {one['p99_ms']:.0f} ms (p50 {one['p50_ms']:.0f}, max {one['max_ms']:.0f}); "
            f"{len(busiest)} wikis p99 {five['p99_ms']:.0f} ms "
            f"(p50 {five['p50_ms']:.0f}, max {five['max_ms']:.0f})"
        ),
        target=f"p99 ≤ {CHART_TARGET_MS:.0f} ms",
        met=max(one["p99_ms"], five["p99_ms"]) <= CHART_TARGET_MS,
        values={
            **{f"one_{k}": v for k, v in one.items()},
            **{f"five_{k}": v for k, v in five.items()},
            "png_bytes_one": float(len(answers["one"].png)),
            "png_bytes_five": float(len(answers["five"].png)),
        },
        notes=(
            f"{int(one['calls'])} calls each, interleaved; `!chart {busiest[0]}` and "
            f"`!chart {','.join(busiest)}` (default period, 30 days); PNG "
            f"{human_bytes(len(answers['one'].png))} and {human_bytes(len(answers['five'].png))}."
        ),
    )


def _load_figure(context: Context, data: query_bench.LoadedData, runs: _Runs) -> Figure:
    size = context.size
    alone, loaded, round_ratios, loaded_seconds = (
        runs.alone,
        runs.loaded,
        runs.round_ratios,
        runs.loaded_seconds,
    )
    by_alone, by_load, by_uncached = _summary(alone), _summary(loaded), _summary(runs.uncached)
    rounds = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in runs.round_p99)
    uncached_rounds = ", ".join(f"{p:.1f}" for p in runs.uncached_p99)
    kept, stale, joined, read = runs.served
    served = max(1, kept + stale + joined + read)
    return Figure(
        number=11,
        what=(
            f"the bot under load: {size.bot_concurrency} `!stats`/`!recent` in flight through the command "
            f"core, {data.rows:,} raw rows"
        ),
        result=(
            f"p99 {by_load['p99_ms']:.1f} ms (p50 {by_load['p50_ms']:.1f}, max {by_load['max_ms']:.0f}) "
            f"over {len(loaded):,} commands"
        ),
        baseline=f"one command alone: p99 {by_alone['p99_ms']:.2f} ms (p50 {by_alone['p50_ms']:.2f})",
        ratio=str(ratio(round_ratios)),
        target=f"p99 ≤ {LOAD_TARGET_MS:.0f} ms",
        met=by_load["p99_ms"] <= LOAD_TARGET_MS,
        values={
            **{f"load_{k}": v for k, v in by_load.items()},
            **{f"alone_{k}": v for k, v in by_alone.items()},
            **{f"uncached_{k}": v for k, v in by_uncached.items()},
            "kept_share": kept / served,
            "stale_share": stale / served,
            "joined_share": joined / served,
            "read_share": read / served,
            "ratio_median": ratio(round_ratios).median,
            "commands_per_s": len(loaded) / max(1e-9, loaded_seconds),
            "rows": float(data.rows),
        },
        notes=(
            f"{size.bot_rounds} rounds of {len(alone) // max(1, size.bot_rounds)} commands alone then "
            f"{size.bot_calls} or more with {size.bot_concurrency} in flight for at least "
            f"{size.bot_round_seconds:g} s (p99 alone/loaded per round, ms: "
            f"{rounds}), then {size.bot_rounds} rounds of the load keeping nothing (p99 per round, ms: "
            f"{uncached_rounds}); the ingester storing "
            f"{LIVE_RATE:.0f} events/s meanwhile; under load {kept / served:.0%} of the answers were kept "
            f"ones, {stale / served:.0%} kept from before a notice (within its grace), "
            f"{joined / served:.0%} joined a read in flight, {read / served:.0%} read the database; "
            f"keeping nothing: p99 {by_uncached['p99_ms']:.1f} ms (p50 {by_uncached['p50_ms']:.1f}); "
            f"pool of {BOT_POOL_SIZE} connections as `teston bot` alone; mix of `!stats <day> <wiki>`, "
            f"`!recent` busiest and `!recent` random wiki; {len(loaded) / max(1e-9, loaded_seconds):,.0f} "
            "commands/s under load."
        ),
    )
