"""The read cache on its own: kept values, topics dropped by notices, reads shared in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bot.read_cache import TopicCache

Key = tuple[str, int]  # (topic, anything)


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
    assert len(cache) == 0
