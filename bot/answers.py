"""What a command answers, before it is rendered for Discord or for a terminal.

The command core (`bot.commands`) builds these; `bot.rendering` turns them into Discord messages or
plain text. Keeping the answer separate from its rendering lets both transports say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum

from bot.charts import ChartData
from bot.feeds.answers import FeedAnswer
from bot.requests import Command, Scope, TopList
from teston.core.statuses import DayStatus
from teston.core.wikis import Wiki

# How many of a day's most edited pages `!stats` lists (the roll-up keeps ten).
TOP_PAGES_SHOWN = 5
# How far `!recent` counts the changes its filters left out when it found none to show: enough to say
# "3" or "more than 1,000", while a wiki of millions of bot edits costs no full count.
LEFT_OUT_COUNTED = 1000


@dataclass(frozen=True, slots=True)
class Change:
    """One row of `recent_changes`, as much of it as a reply shows."""

    event_time: datetime
    server_name: str
    type: str
    namespace: int | None
    title: str | None
    user_name: str | None
    bot: bool
    comment: str | None
    revision_old: int | None
    revision_new: int | None
    length_old: int | None
    length_new: int | None
    log_type: str | None
    log_action: str | None


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One row of `daily_wiki_stats`."""

    changes: int
    edits: int
    new_pages: int
    log_actions: int
    categorize: int
    other_types: int
    bot_changes: int
    anonymous_changes: int
    human_changes: int
    bytes_added: int
    bytes_removed: int
    net_bytes: int
    distinct_editors: int
    distinct_pages: int
    hourly_changes: tuple[int, ...]
    computed_at: datetime


@dataclass(frozen=True, slots=True)
class TopPage:
    rank: int
    namespace: int | None
    title: str
    changes: int


@dataclass(frozen=True, slots=True)
class DayRollup:
    """One row of `day_rollups`: whether TestON collected the day, and how completely."""

    status: DayStatus
    incomplete: bool
    computed_at: datetime


@dataclass(frozen=True, slots=True)
class Problem:
    """The arguments cannot be used; `problem` is plain text, `command` selects the usage line."""

    problem: str
    command: Command | None
    # The command needs a user (or a server) the invoker did not name (see `UsageError.missing`).
    missing: Scope | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """TestON could not answer (the database is unreachable or slow); nothing the user did wrong."""

    message: str


@dataclass(frozen=True, slots=True)
class RecentChanges:
    wiki: Wiki
    changes: tuple[Change, ...]
    count: int
    include_bots: bool
    include_categorize: bool
    asked: int | None = None
    # Only when no change was found: the newest day the summary tables counted changes of the wiki
    # (None if never), and for how many days raw changes are kept (RETENTION_DAYS), so the reply can
    # tell "never recorded" from "recorded, but dropped after export".
    newest_day: date | None = None
    retention_days: int | None = None
    # Only when no change was shown: how many stored changes of the wiki the filters left out (bot and
    # category changes), counted up to `LEFT_OUT_COUNTED` and one more, so the reply can say how to see them.
    left_out: int = 0


@dataclass(frozen=True, slots=True)
class DayStats:
    wiki: Wiki
    day: date
    figures: DayFigures
    top_pages: tuple[TopPage, ...]
    rollup: DayRollup | None


class Absence(StrEnum):
    """Why a day has no figures for a wiki."""

    NOT_COLLECTED = "not_collected"  # no roll-up of the day exists: TestON was not running then
    NOT_ROLLED_UP = "not_rolled_up"  # changes of the day arrived, but no roll-up has counted them yet
    NONE_SEEN = "none_seen"  # the day was rolled up and this wiki had no changes in it


@dataclass(frozen=True, slots=True)
class NoStats:
    wiki: Wiki
    day: date
    absence: Absence
    rollup: DayRollup | None
    is_today: bool


@dataclass(frozen=True, slots=True)
class LanguageSet:
    wiki: Wiki
    scope: Scope


@dataclass(frozen=True, slots=True)
class LanguageDefaults:
    """The defaults in force for one user in one place, and the wiki they add up to."""

    user: Wiki | None
    guild: Wiki | None
    effective: Wiki
    in_guild: bool


@dataclass(frozen=True, slots=True)
class Help:
    command: Command | None


@dataclass(frozen=True, slots=True)
class RangeStats:
    """`!stats <from>..<to>`: the additive figures summed over the days the summary tables hold.

    `figures.distinct_editors` and `distinct_pages` are meaningful only when `distinct_counted`: they
    cannot be summed across days, so they are counted over the raw rows, which must all still be kept.
    """

    wiki: Wiki
    first: date
    last: date
    figures: DayFigures
    days_counted: int
    partial_days: int
    incomplete_days: int
    distinct_counted: bool
    retention_days: int


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart drawn from the summary tables: its data, and the PNG drawn from it."""

    wikis: tuple[Wiki, ...]
    first: date
    last: date
    hourly: bool
    data: ChartData
    png: bytes

    @property
    def filename(self) -> str:
        names = "-".join(wiki.dbname for wiki in self.wikis)
        period = (
            self.first.isoformat() if self.hourly else f"{self.first.isoformat()}_{self.last.isoformat()}"
        )
        return f"teston-{names}-{period}.png"


@dataclass(frozen=True, slots=True)
class NoChart:
    """No summary row of any of the wikis in the period: nothing to draw."""

    wikis: tuple[Wiki, ...]
    first: date
    last: date


@dataclass(frozen=True, slots=True)
class TopEntry:
    rank: int
    name: str
    changes: int
    namespace: int | None = None
    bot: bool = False


@dataclass(frozen=True, slots=True)
class TopEntries:
    """A day's top ten pages or editors of a wiki (empty when the roll-up found none)."""

    wiki: Wiki
    day: date
    kind: TopList
    entries: tuple[TopEntry, ...]
    rollup: DayRollup | None


@dataclass(frozen=True, slots=True)
class Digest:
    """One daily digest: a wiki's figures posted in a channel every day at `at` (UTC)."""

    id: int
    channel_id: int
    wiki: Wiki | None  # None if the catalog no longer lists the stored wiki
    dbname: str
    at: time
    last_day: date | None = None
    paused_reason: str | None = None
    paused_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DigestSet:
    digest: Digest
    created: bool


@dataclass(frozen=True, slots=True)
class DigestsRemoved:
    digests: tuple[Digest, ...]


@dataclass(frozen=True, slots=True)
class DigestList:
    digests: tuple[Digest, ...]


Answer = (
    Problem
    | Failure
    | RecentChanges
    | DayStats
    | NoStats
    | LanguageSet
    | LanguageDefaults
    | Help
    | RangeStats
    | Chart
    | NoChart
    | TopEntries
    | DigestSet
    | DigestsRemoved
    | DigestList
    | FeedAnswer
)
