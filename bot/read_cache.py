"""Answers read from the database kept until the database says they changed, and reads shared in flight.

`!recent en` asked a hundred times a minute reads the same ten rows a hundred times, and `!stats` of a day
already rolled up reads rows that only the next roll-up of that day replaces. Each value read is kept
under a *topic* — the wiki of `!recent`, the day of `!stats` — and dropped when a notification names
that topic: the ingester names the wikis of every commit (`recent_changes`), a roll-up the day it
replaced (`day_rollups`), `bot.notifications` delivers them here.

Values are kept only while notifications flow (`following`): from the moment the bot LISTENs (everything
read before is forgotten then) until its connection is lost. Without them nothing is kept and every
command reads the database, as with no cache at all.

A read that started before a notification of its topic may have missed that change: its value answers
the commands that asked for it but is not kept, and commands arriving after the notification do not join
it. Commands asking for the same thing while a read of it is under way wait for that read instead of
starting their own (one query for a burst of `!recent en`).

No IO here: the reads are functions passed in.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

# How much is kept per kind (in the kind's weight: values unless told); the least recently used go first.
DEFAULT_CAPACITY = 20_000
# Values past their grace are forgotten once this many have gathered.
STALE_SWEEP = 256


@dataclass(slots=True)
class CacheCounts:
    """How reads were served: kept values, joined reads in flight, reads of the database."""

    hits: int = 0
    joined: int = 0
    reads: int = 0
    # Given from before a notice, within the grace, while the value is read again.
    stale: int = 0


class _Abandoned(Exception):
    """The read a command waited for was cancelled (its own command timed out): read again."""


class TopicCache(Generic[K, T]):
    """Values by key, each under the topic `topic_of(key)`; `changed` drops a topic's values."""

    def __init__(
        self,
        topic_of: Callable[[K], Hashable],
        *,
        keep: Callable[[T], bool] = lambda value: True,
        capacity: int = DEFAULT_CAPACITY,
        weigh: Callable[[T], int] = lambda value: 1,
        grace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topic_of = topic_of
        self._keep = keep
        # What the values kept may weigh together (`weigh`: 1 each unless told, e.g. rows held).
        self.capacity = capacity
        self._weigh = weigh
        self.weight = 0
        self._weights: dict[K, int] = {}
        self.grace = grace
        self._clock = clock
        # Values a notice named, given until their deadline while one read of them runs in the background.
        self._stale: dict[K, tuple[T, float]] = {}
        self._refreshes: set[asyncio.Task[T]] = set()
        self.counts = CacheCounts()
        self._following = False
        self._values: OrderedDict[K, T] = OrderedDict()
        self._keys_of: dict[Hashable, set[K]] = {}
        # A topic's version moves at each of its notifications, `_epoch` at each that names them all:
        # a read keeps its value only if neither moved while it ran.
        self._versions: dict[Hashable, int] = {}
        self._epoch = 0
        self._flights: dict[tuple[K, int, int], asyncio.Future[T]] = {}

    @property
    def following(self) -> bool:
        return self._following

    def __len__(self) -> int:
        return len(self._values)

    def follow(self) -> None:
        """Notifications flow from now on: keep values (anything read before is forgotten)."""
        self.changed(None)
        self._following = True

    def lose(self) -> None:
        """Notifications stopped (the connection was lost): forget everything and keep nothing."""
        self._following = False
        self.changed(None)
        for task in self._refreshes:
            task.cancel()

    def changed(self, topics: Iterable[Hashable] | None) -> None:
        """What the database says changed: these topics, or everything (None)."""
        if topics is None:
            self._epoch += 1
            self._values.clear()
            self._weights.clear()
            self.weight = 0
            self._keys_of.clear()
            self._stale.clear()
            return
        now = self._clock()
        if len(self._stale) >= STALE_SWEEP:
            self._stale = {key: kept for key, kept in self._stale.items() if kept[1] > now}
        for topic in topics:
            self._versions[topic] = self._versions.get(topic, 0) + 1
            for key in self._keys_of.pop(topic, ()):
                value = self._values.pop(key, _MISSING)
                self.weight -= self._weights.pop(key, 0)
                if self.grace > 0 and value is not _MISSING and key not in self._stale:
                    # A value already stale keeps its first deadline: notices do not extend it.
                    self._stale[key] = (value, now + self.grace)  # type: ignore[assignment]

    async def read(self, key: K, load: Callable[[], Awaitable[T]]) -> T:
        """The value of `key`: kept, or the read of it under way, or `load()` (kept if still current)."""
        while True:
            if self._following:
                value = self._values.get(key, _MISSING)
                if value is not _MISSING:
                    self._values.move_to_end(key)
                    self.counts.hits += 1
                    return value  # type: ignore[return-value]
            topic = self._topic_of(key)
            flight_key = (key, self._epoch, self._versions.get(topic, 0))
            flight = self._flights.get(flight_key)
            stale = self._stale.get(key) if self._following else None
            if stale is not None and stale[1] > self._clock():
                if flight is None:
                    self._refresh(key, topic, flight_key, load)
                self.counts.stale += 1
                return stale[0]
            if flight is None:
                return await self._lead(key, topic, self._open(flight_key), load)
            self.counts.joined += 1
            try:
                # Shielded: a joiner cancelled (its command timed out) must not cancel the read itself.
                return await asyncio.shield(flight)
            except _Abandoned:
                continue

    def _open(self, flight_key: tuple[K, int, int]) -> tuple[tuple[K, int, int], asyncio.Future[T]]:
        """A read of `flight_key` under way from now: later commands asking the same join it."""
        flight: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = flight
        self.counts.reads += 1
        return flight_key, flight

    async def _lead(
        self,
        key: K,
        topic: Hashable,
        opened: tuple[tuple[K, int, int], asyncio.Future[T]],
        load: Callable[[], Awaitable[T]],
    ) -> T:
        flight_key, flight = opened
        try:
            value = await load()
        except asyncio.CancelledError:
            self._fail(opened, _Abandoned())
            raise
        except Exception as error:
            self._fail(opened, error)
            raise
        del self._flights[flight_key]
        current = (key, self._epoch, self._versions.get(topic, 0)) == flight_key
        if self._following and current and self._keep(value):
            self._store(key, topic, value)
        flight.set_result(value)
        return value

    def _fail(self, opened: tuple[tuple[K, int, int], asyncio.Future[T]], error: Exception) -> None:
        """End a read without a value: whoever joined it gets `error` (`_Abandoned`: read for themselves)."""
        flight_key, flight = opened
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]
        flight.set_exception(error)
        flight.exception()  # retrieved: nobody may be waiting

    def _refresh(
        self, key: K, topic: Hashable, flight_key: tuple[K, int, int], load: Callable[[], Awaitable[T]]
    ) -> None:
        """Read `key` again in the background; a failure is left for the next command to meet."""
        opened = self._open(flight_key)
        task = asyncio.get_running_loop().create_task(self._lead(key, topic, opened, load))
        self._refreshes.add(task)

        def done(finished: asyncio.Task[T]) -> None:
            self._refreshes.discard(finished)
            if not finished.cancelled():
                finished.exception()  # retrieved: the command that started it has its answer
            if not opened[1].done():  # cancelled before it ran
                self._fail(opened, _Abandoned())

        task.add_done_callback(done)

    def _store(self, key: K, topic: Hashable, value: T) -> None:
        self._stale.pop(key, None)
        self.weight -= self._weights.pop(key, 0)
        self._values[key] = value
        self._values.move_to_end(key)
        self._weights[key] = weight = self._weigh(value)
        self.weight += weight
        self._keys_of.setdefault(topic, set()).add(key)
        while self.weight > self.capacity and len(self._values) > 1:
            oldest, _ = self._values.popitem(last=False)
            self.weight -= self._weights.pop(oldest, 0)
            keys = self._keys_of.get(self._topic_of(oldest))
            if keys is not None:
                keys.discard(oldest)


_MISSING = object()
