"""The read cache on its own: kept values, topics dropped by notices, reads shared in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from bot.answers import Change
from bot.command_reads import CommandReads, RecentKey, RecentReading
from bot.metrics import BotMetrics
from bot.read_cache import TopicCache

Key = tuple[str, int]  # (topic, anything)
CHANGE = Change(
    event_time=datetime(2025, 5, 3, 12, 0, tzinfo=UTC),
    server_name="en.wikipedia.org",
    type="edit",
    namespace=0,
    title="Page",
    user_name="Alice",
    bot=False,
    comment="",
    revision_old=1,
    revision_new=2,
    length_old=10,
    length_new=20,
    log_type=None,
    log_action=None,
)


def make_cache(**options: object) -> TopicCache[Key, str]:
    return TopicCache(lambda key: key[0], **options)  # type: ignore[arg-type]


class Source:
    """A database stand-in: counts reads, answers `<topic>:<n>` with n the read's number."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate: asyncio.Event | None = None

    def load(self, key: Key) -> Callable[[], Awaitable[str]]:
        async def read() -> str:
            self.reads += 1
            number = self.reads
            if self.gate is not None:
                await self.gate.wait()
            return f"{key[0]}:{number}"

        return read


async def test_nothing_is_kept_until_notices_flow_nor_after_they_are_lost() -> None:
    cache, source = make_cache(), Source()
    key = ("enwiki", 10)
    assert [await cache.read(key, source.load(key)) for _ in range(2)] == ["enwiki:1", "enwiki:2"]
    cache.follow()
    assert [await cache.read(key, source.load(key)) for _ in range(3)] == ["enwiki:3"] * 3
    assert (cache.counts.hits, cache.counts.reads) == (2, 3)
    cache.lose()
    assert len(cache) == 0
    assert [await cache.read(key, source.load(key)) for _ in range(2)] == ["enwiki:4", "enwiki:5"]


async def test_a_notice_drops_its_topics_values_only_and_an_empty_one_drops_all() -> None:
    cache, source = make_cache(), Source()
    cache.follow()
    en, en20, de = ("enwiki", 10), ("enwiki", 20), ("dewiki", 10)
    for key in (en, en20, de):
        await cache.read(key, source.load(key))
    cache.changed(["enwiki", "frwiki"])
    assert await cache.read(en, source.load(en)) == "enwiki:4"
    assert await cache.read(en20, source.load(en20)) == "enwiki:5"
    assert await cache.read(de, source.load(de)) == "dewiki:3"  # still the first read
    cache.changed(None)
    assert await cache.read(de, source.load(de)) == "dewiki:6"


async def test_commands_asking_alike_at_once_share_one_read() -> None:
    cache, source = make_cache(), Source()
    source.gate = asyncio.Event()
    key = ("enwiki", 10)
    tasks = [asyncio.create_task(cache.read(key, source.load(key))) for _ in range(5)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*tasks) == ["enwiki:1"] * 5
    assert (source.reads, cache.counts.joined) == (1, 4)
    assert len(cache) == 0  # not following: shared, but not kept


async def test_a_read_overtaken_by_a_notice_answers_its_callers_but_is_neither_kept_nor_joined() -> None:
    cache, source = make_cache(), Source()
    cache.follow()
    source.gate = asyncio.Event()
    key = ("enwiki", 10)
    before = asyncio.create_task(cache.read(key, source.load(key)))
    await asyncio.sleep(0)
    cache.changed(["enwiki"])  # committed while the read ran: it may have missed that change
    after = asyncio.create_task(cache.read(key, source.load(key)))
    await asyncio.sleep(0)
    source.gate.set()
    assert (await before, await after) == ("enwiki:1", "enwiki:2")
    source.gate = None
    assert await cache.read(key, source.load(key)) == "enwiki:2"  # the later read was kept
    assert source.reads == 2


async def test_a_failed_read_fails_its_joiners_and_a_cancelled_one_lets_them_read() -> None:
    cache = make_cache()
    cache.follow()
    gate = asyncio.Event()
    key = ("enwiki", 10)

    async def failing() -> str:
        await gate.wait()
        raise OSError("connection lost")

    async def fine() -> str:
        return "fine"

    tasks = [asyncio.create_task(cache.read(key, failing)) for _ in range(2)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(r) for r in results] == ["connection lost"] * 2
    assert await cache.read(key, fine) == "fine"

    cache.changed(None)
    gate.clear()
    leader = asyncio.create_task(cache.read(key, failing))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(cache.read(key, fine))
    await asyncio.sleep(0)
    leader.cancel()  # its command timed out
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await joiner == "fine"


async def test_what_is_kept_is_chosen_and_bounded() -> None:
    cache: TopicCache[Key, str] = TopicCache(lambda key: key[0], keep=lambda value: value != "", capacity=2)
    cache.follow()
    reads = 0

    async def empty() -> str:
        nonlocal reads
        reads += 1
        return ""

    await cache.read(("quiet", 1), empty)
    await cache.read(("quiet", 1), empty)
    assert reads == 2  # an empty answer is read each time

    async def value() -> str:
        return "v"

    for number in range(3):
        await cache.read(("enwiki", number), value)
    assert len(cache) == 2
    cache.changed(["enwiki"])
    assert (len(cache), cache.weight) == (0, 0)

    weighed: TopicCache[Key, str] = TopicCache(lambda key: key[0], capacity=10, weigh=len)
    weighed.follow()
    for size in (4, 5, 3):

        async def rows(size: int = size) -> str:
            return "x" * size

        await weighed.read(("dewiki", size), rows)
    # 4 + 5 + 3 > 10: the least recently used (4) went; what is kept weighs 8.
    assert (len(weighed), weighed.weight) == (2, 8)


async def test_how_answers_were_served_is_exported_to_prometheus() -> None:
    registry = CollectorRegistry()
    metrics = BotMetrics(registry)
    assert registry.get_sample_value("teston_bot_notices_following") == 0
    assert registry.get_sample_value("teston_bot_reads_total", {"kind": "recent", "served": "read"}) == 0
    reads = CommandReads()
    metrics.count_reads(reads)
    reads.following()
    key = RecentKey("enwiki", 10, include_bots=False, include_categorize=False)
    reading = RecentReading(changes=(CHANGE,))

    async def load() -> RecentReading:
        return reading

    for _ in range(3):
        assert await reads.recent.read(key, load) is reading
    reads.notified("recent_changes", "dewiki,enwiki")
    assert await reads.recent.read(key, load) is reading  # the answer from before, read again meanwhile
    for _ in range(3):
        await asyncio.sleep(0)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("teston_bot_reads_total", kind="recent", served="kept") == 2
    assert sample("teston_bot_reads_total", kind="recent", served="stale") == 1
    assert sample("teston_bot_reads_total", kind="recent", served="read") == 2
    assert sample("teston_bot_reads_total", kind="stats", served="read") == 0
    assert sample("teston_bot_kept_answers", kind="recent") == 1
    assert sample("teston_bot_notices_following") == 1
    reads.lost()
    assert sample("teston_bot_kept_answers", kind="recent") == 0
    assert sample("teston_bot_notices_following") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_within_the_grace_a_changed_value_is_given_while_one_read_runs_behind_it() -> None:
    clock, source = Clock(), Source()
    cache: TopicCache[Key, str] = TopicCache(lambda key: key[0], grace=0.1, clock=clock)
    cache.follow()
    key = ("wikidatawiki", 10)
    assert await cache.read(key, source.load(key)) == "wikidatawiki:1"
    source.gate = asyncio.Event()
    cache.changed(["wikidatawiki"])
    clock.now += 0.05
    # Everyone asking within 0.1 s of the notice gets the answer from before, and one read starts.
    assert [await cache.read(key, source.load(key)) for _ in range(3)] == ["wikidatawiki:1"] * 3
    await asyncio.sleep(0)
    assert (source.reads, cache.counts.stale) == (2, 3)
    cache.changed(["wikidatawiki"])  # another commit: the deadline stays the first notice's
    clock.now += 0.06
    # Past the grace, commands wait for a read begun after the last notice.
    waiting = asyncio.create_task(cache.read(key, source.load(key)))
    await asyncio.sleep(0)
    source.gate.set()
    assert await waiting == "wikidatawiki:3"
    source.gate = None
    assert await cache.read(key, source.load(key)) == "wikidatawiki:3"
    assert source.reads == 3


async def test_a_failed_read_behind_a_changed_value_is_met_by_the_next_command_past_the_grace() -> None:
    clock = Clock()
    cache: TopicCache[Key, str] = TopicCache(lambda key: key[0], grace=0.1, clock=clock)
    cache.follow()
    key = ("enwiki", 10)

    async def first() -> str:
        return "before"

    async def failing() -> str:
        raise OSError("connection lost")

    await cache.read(key, first)
    cache.changed(["enwiki"])
    assert await cache.read(key, failing) == "before"
    for _ in range(3):
        await asyncio.sleep(0)
    clock.now += 0.2
    with pytest.raises(OSError, match="connection lost"):
        await cache.read(key, failing)
    cache.lose()
    cache.follow()
    assert await cache.read(key, first) == "before"


async def test_a_read_behind_a_changed_value_cancelled_before_it_ran_leaves_nobody_waiting() -> None:
    clock, source = Clock(), Source()
    cache: TopicCache[Key, str] = TopicCache(lambda key: key[0], grace=0.1, clock=clock)
    cache.follow()
    key = ("enwiki", 10)
    await cache.read(key, source.load(key))
    cache.changed(["enwiki"])
    assert await cache.read(key, source.load(key)) == "enwiki:1"  # a read starts behind it
    clock.now += 0.2
    joiner = asyncio.create_task(cache.read(key, source.load(key)))  # will join the read behind
    for task in list(cache._refreshes):
        task.cancel()  # as when the bot stops
    assert await asyncio.wait_for(joiner, 1) == "enwiki:2"
    assert cache.counts.joined == 1
