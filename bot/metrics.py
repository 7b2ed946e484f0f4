"""What the bot exposes to Prometheus: commands by name and outcome, their latency, the gateway.

Outcomes come from the answer a command produced (`bot.answers`): `ok` for an answer, `problem` for the
user's mistake (unknown language, bad date), `failure` for ours (the database unreachable), and
`rate_limited` for a command refused by the cooldown. Feed posts and the feed backlog have their
counters here too, for the code that posts feeds to count into.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, assert_never

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.answers import (
    Answer,
    Chart,
    DayStats,
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
from bot.feeds.answers import FeedCreated, FeedList, FeedRemoved
from bot.requests import Command

if TYPE_CHECKING:
    from bot.command_reads import CommandReads

OK = "ok"
PROBLEM = "problem"
FAILURE = "failure"
RATE_LIMITED = "rate_limited"
OUTCOMES = (OK, PROBLEM, FAILURE, RATE_LIMITED)
# Commands that could not even be named (a text that is no command at all).
UNKNOWN_COMMAND = "unknown"
# The command core answers in milliseconds (see BENCHMARKS.md); Discord gives up after 3 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def outcome_of(answer: Answer) -> str:
    """`ok`, `problem` or `failure` for an answer of the command core."""
    match answer:
        case Problem():
            return PROBLEM
        case Failure():
            return FAILURE
        case (
            RecentChanges()
            | DayStats()
            | NoStats()
            | LanguageSet()
            | LanguageDefaults()
            | Help()
            | RangeStats()
            | Chart()
            | NoChart()
            | TopEntries()
            | DigestSet()
            | DigestsRemoved()
            | DigestList()
            | FeedCreated()
            | FeedRemoved()
            | FeedList()
        ):
            return OK
        case _:
            assert_never(answer)


class KeptAnswers(Collector):
    """How `!recent` and `!stats` were served (`bot.command_reads`), read from its counts at each scrape."""

    KINDS = ("recent", "stats")

    def __init__(self) -> None:
        self.reads: CommandReads | None = None

    def collect(self) -> Iterator[Metric]:
        served = CounterMetricFamily(
            "teston_bot_reads",
            "!recent and !stats answers by how they were served: kept (no database), stale (kept, its "
            "wiki changed less than the grace ago, read again meanwhile), joined (a read of the same "
            "already under way), read (from the database).",
            labels=["kind", "served"],
        )
        kept = GaugeMetricFamily("teston_bot_kept_answers", "Answers kept now, by kind.", labels=["kind"])
        following = GaugeMetricFamily(
            "teston_bot_notices_following",
            "1 while the bot follows the database's notices (so it may keep answers), else 0.",
        )
        reads = self.reads
        caches = (reads.recent, reads.stats) if reads is not None else (None, None)
        for kind, cache in zip(self.KINDS, caches, strict=True):
            counts = (0, 0, 0, 0)
            if cache is not None:
                counts = (cache.counts.hits, cache.counts.stale, cache.counts.joined, cache.counts.reads)
            for way, count in zip(("kept", "stale", "joined", "read"), counts, strict=True):
                served.add_metric([kind, way], count)
            kept.add_metric([kind], len(cache) if cache is not None else 0)
        following.add_metric([], 1 if reads is not None and reads.recent.following else 0)
        yield from (served, kept, following)


class BotMetrics:
    """The bot's counters, histogram and gauges, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._connected = False
        self.commands = Counter(
            "teston_bot_commands",
            "Commands answered, by command and outcome (ok, problem, failure, rate_limited).",
            ["command", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "teston_bot_command_latency_seconds",
            "Time from a parsed command to its answer (parsing, wiki resolution, the queries).",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.gateway_connected = Gauge(
            "teston_bot_gateway_connected",
            "1 while connected to Discord's gateway, else 0.",
            registry=registry,
        )
        self.gateway_disconnects = Counter(
            "teston_bot_gateway_disconnects", "Times the gateway connection was lost.", registry=registry
        )
        self.guilds = Gauge(
            "teston_bot_guilds", "Servers the bot is in, as of the last (re)connect.", registry=registry
        )
        self.feed_posts = Counter(
            "teston_bot_feed_posts",
            "Feed messages posted to channels, by outcome (ok, failure).",
            ["outcome"],
            registry=registry,
        )
        self.feed_backlog = Gauge(
            "teston_bot_feed_backlog", "Feed items waiting to be posted.", registry=registry
        )
        for command in Command:
            for outcome in OUTCOMES:
                self.commands.labels(command=command.value, outcome=outcome)
        for outcome in (OK, FAILURE):
            self.feed_posts.labels(outcome=outcome)
        self._kept = KeptAnswers()
        registry.register(self._kept)

    def count_reads(self, reads: CommandReads) -> None:
        """Expose how the core's `!recent` and `!stats` answers are served (kept, joined, read)."""
        self._kept.reads = reads

    def observe_answer(self, command: Command | None, answer: Answer, seconds: float) -> None:
        """Count one answered command and its latency."""
        name = command.value if command is not None else UNKNOWN_COMMAND
        self.commands.labels(command=name, outcome=outcome_of(answer)).inc()
        self.latency.labels(command=name).observe(seconds)

    def count_outcome(self, command: str, outcome: str) -> None:
        """Count a command the core did not answer: refused by the cooldown, or broken in the shell."""
        self.commands.labels(command=command, outcome=outcome).inc()

    def connected(self, guilds: int) -> None:
        """The gateway session is up (ready or resumed)."""
        self._connected = True
        self.gateway_connected.set(1)
        self.guilds.set(guilds)

    def disconnected(self) -> None:
        """The gateway session is down; counted once however often discord.py reports it."""
        if self._connected:
            self.gateway_disconnects.inc()
        self._connected = False
        self.gateway_connected.set(0)

    def count_feed_post(self, ok: bool) -> None:
        """For the feed poster: one message posted (or not)."""
        self.feed_posts.labels(outcome=OK if ok else FAILURE).inc()

    def set_feed_backlog(self, items: int) -> None:
        """For the feed poster: how many items wait to be posted."""
        self.feed_backlog.set(items)
