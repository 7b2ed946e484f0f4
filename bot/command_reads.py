"""The reads of `!recent` and `!stats` that `bot.read_cache` keeps, and the notices that drop them.

`!recent` answers are kept under their wiki; one whose wiki changed is still given for `RECENT_GRACE`
while it is read again. An answer showing no change also tells the newest day the summary tables counted,
so a roll-up drops every kept `!recent` answer as well (roll-ups are minutes apart; the answers are read
again once each).
`!stats` readings are kept under their day once the day is rolled up: from then on only another roll-up
of the day (`day_rollups`) changes what they show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.answers import Change
from bot.queries import DayReading
from bot.read_cache import TopicCache
from teston.core.notices import CHANGES_CHANNEL, ROLLUPS_CHANNEL, day_named, wikis_named

# What is kept at most: 50,000 changes in `!recent` answers (a change is about 0.5 KB: 25 MB), 10,000
# `!stats` readings (a wiki's day and its top pages, about 2 KB: 20 MB).
RECENT_CAPACITY = 50_000
STATS_CAPACITY = 10_000

# A `!recent` answer whose wiki changed is still given for this long after the notice, while it is read
# again once for every command asking: Wikidata's or Commons' answers change with nearly every commit,
# and the commands asking meanwhile would otherwise all wait for that read. Well within the 0.3 s from
# an event's arrival to `!recent` that freshness is held to (BENCHMARKS.md, figure 7).
RECENT_GRACE = 0.1


@dataclass(frozen=True, slots=True)
class RecentKey:
    wiki: str  # database name
    count: int
    include_bots: bool
    include_categorize: bool


@dataclass(frozen=True, slots=True)
class RecentReading:
    """What `!recent` read: the changes, and when there are none the newest counted day and the left out."""

    changes: tuple[Change, ...]
    newest_day: date | None = None
    left_out: int = 0


@dataclass(frozen=True, slots=True)
class StatsKey:
    wiki: str
    day: date
    pages: int


class CommandReads:
    """The kept reads of the command core; a `bot.notifications` subscriber."""

    def __init__(
        self,
        *,
        recent_changes: int = RECENT_CAPACITY,
        stats_days: int = STATS_CAPACITY,
        recent_grace: float = RECENT_GRACE,
    ) -> None:
        self.recent: TopicCache[RecentKey, RecentReading] = TopicCache(
            lambda key: key.wiki,
            capacity=recent_changes,
            weigh=lambda reading: max(1, len(reading.changes)),
            grace=recent_grace,
        )
        self.stats: TopicCache[StatsKey, DayReading] = TopicCache(
            lambda key: key.day, keep=lambda reading: reading.rollup is not None, capacity=stats_days
        )

    def following(self) -> None:
        self.recent.follow()
        self.stats.follow()

    def lost(self) -> None:
        self.recent.lose()
        self.stats.lose()

    def notified(self, channel: str, payload: str) -> None:
        if channel == CHANGES_CHANNEL:
            self.recent.changed(wikis_named(payload))
        elif channel == ROLLUPS_CHANNEL:
            day = day_named(payload)
            self.stats.changed(None if day is None else (day,))
            self.recent.changed(None)
