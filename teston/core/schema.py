"""The database schema: every table TestON keeps, declared once for Alembic to migrate.

Application code never creates tables; `migrations/` does, from this metadata.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    Time,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel

# Stable constraint names so migrations and downgrades are deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class SchemaModel(SQLModel):
    """The base of TestON's tables: a metadata of their own with the naming convention (SQLModel's kept)."""

    metadata: ClassVar[MetaData] = MetaData(naming_convention=NAMING_CONVENTION)


metadata = SchemaModel.metadata


# Numbers `recent_changes.arrival`; CACHE 1 (the default), so numbers are drawn in the order of the
# statements that draw them, whichever session runs them.
ARRIVAL_SEQUENCE = "recent_changes_arrival_seq"


def _tz(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


# The rows `!recent` shows unless asked for more: what people, not bots, changed in pages. `bot.queries`
# filters by each (a command may ask for bots or category changes); both are the partial index's condition.
NOT_BOTS_CONDITION = "NOT bot"
NOT_CATEGORIZE_CONDITION = "type <> 'categorize'"
RECENT_EDITS_CONDITION = f"{NOT_BOTS_CONDITION} AND {NOT_CATEGORIZE_CONDITION}"


class RecentChange(SchemaModel, table=True):
    """One row per recentchange event, range-partitioned by the UTC day of `event_time`."""

    __tablename__ = "recent_changes"
    __table_args__ = (
        # `event_time` belongs to the key because PostgreSQL requires the partition key in every
        # unique constraint of a partitioned table; an event's timestamp never changes, so
        # (event_time, event_id) is as unique as `meta.id` alone.
        Index("ix_recent_changes_wiki_event_time", "wiki", text("event_time DESC")),
        # `!recent`'s default view, bots and category changes left out (`bot.queries`): on a wiki whose
        # changes are nearly all bots', the index above would be read to its end to find none.
        Index(
            "ix_recent_changes_wiki_event_time_edits",
            "wiki",
            text("event_time DESC"),
            postgresql_where=text(RECENT_EDITS_CONDITION),
        ),
        # Live feeds read a wiki's rows in arrival order, from their cursor on.
        Index("ix_recent_changes_wiki_arrival", "wiki", "arrival"),
        {"postgresql_partition_by": "RANGE (event_time)"},
    )

    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    wiki: str = Field(sa_column=Column(Text, nullable=False))
    server_name: str = Field(sa_column=Column(Text, nullable=False))
    lang: str | None = Field(default=None, sa_column=Column(Text))
    project: str = Field(sa_column=Column(Text, nullable=False))
    type: str = Field(sa_column=Column(Text, nullable=False))
    namespace: int | None = Field(default=None, sa_column=Column(Integer))
    title: str | None = Field(default=None, sa_column=Column(Text))
    user_name: str | None = Field(default=None, sa_column=Column(Text))
    bot: bool = Field(sa_column=Column(Boolean, nullable=False))
    minor: bool | None = Field(default=None, sa_column=Column(Boolean))
    patrolled: bool | None = Field(default=None, sa_column=Column(Boolean))
    length_old: int | None = Field(default=None, sa_column=Column(Integer))
    length_new: int | None = Field(default=None, sa_column=Column(Integer))
    revision_old: int | None = Field(default=None, sa_column=Column(BigInteger))
    revision_new: int | None = Field(default=None, sa_column=Column(BigInteger))
    rcid: int | None = Field(default=None, sa_column=Column(BigInteger))
    log_type: str | None = Field(default=None, sa_column=Column(Text))
    log_action: str | None = Field(default=None, sa_column=Column(Text))
    comment: str | None = Field(default=None, sa_column=Column(Text))
    raw: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    received_at: datetime = _tz(nullable=False, server_default=text("now()"))
    # The order rows became visible in, drawn from a sequence as they are inserted: the ingester commits
    # in this order (`ingestion.writer`), so a reader that has seen arrival n has seen every row before
    # it, late events included. Rows stored before live feeds existed have none.
    arrival: int | None = Field(
        default=None, sa_column=Column(BigInteger, server_default=text(f"nextval('{ARRIVAL_SEQUENCE}')"))
    )


# Column order used by the ingester's COPY; kept beside the table so the two cannot drift apart.
# `arrival` is bookkeeping the database assigns, not part of an event: COPY and exports leave it out.
RECENT_CHANGE_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in inspect(RecentChange).columns if c.name != "arrival"
)


class RejectedEvent(SchemaModel, table=True):
    """Quarantine: what was received, why it was refused, and when."""

    __tablename__ = "rejected_events"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    received_at: datetime = _tz(nullable=False, server_default=text("now()"))
    source: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))


class StreamCursor(SchemaModel, table=True):
    """Last `id:` seen per stream; written in the same transaction as the rows it covers."""

    __tablename__ = "stream_cursors"

    stream: str = Field(sa_column=Column(Text, primary_key=True))
    last_event_id: str = Field(sa_column=Column(Text, nullable=False))
    last_event_time: datetime | None = _tz()
    updated_at: datetime = _tz(nullable=False, server_default=text("now()"))


class IngestGap(SchemaModel, table=True):
    """A stretch of time the stream could not replay (an outage longer than its retention)."""

    __tablename__ = "ingest_gaps"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    stream: str = Field(sa_column=Column(Text, nullable=False))
    gap_from: datetime = _tz(nullable=False)
    gap_to: datetime = _tz(nullable=False)
    recorded_at: datetime = _tz(nullable=False, server_default=text("now()"))


class DayArrival(SchemaModel, table=True):
    """When rows for a UTC day last arrived; the ingester bumps it in the same transaction as the rows.

    A roll-up older than `last_received_at` is stale: late events for that day must be rolled up again.
    """

    __tablename__ = "day_arrivals"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    last_received_at: datetime = _tz(nullable=False)


class DailyWikiStats(SchemaModel, table=True):
    """Per (UTC day, wiki) figures that answer `!stats`; replaced whole by each roll-up."""

    __tablename__ = "daily_wiki_stats"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    wiki: str = Field(sa_column=Column(Text, primary_key=True))
    changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    edits: int = Field(sa_column=Column(BigInteger, nullable=False))
    new_pages: int = Field(sa_column=Column(BigInteger, nullable=False))
    log_actions: int = Field(sa_column=Column(BigInteger, nullable=False))
    categorize: int = Field(sa_column=Column(BigInteger, nullable=False))
    other_types: int = Field(sa_column=Column(BigInteger, nullable=False))
    bot_changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    anonymous_changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    human_changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    content_changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    other_namespace_changes: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_added: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_removed: int = Field(sa_column=Column(BigInteger, nullable=False))
    net_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    distinct_editors: int = Field(sa_column=Column(BigInteger, nullable=False))
    distinct_pages: int = Field(sa_column=Column(BigInteger, nullable=False))
    hourly_changes: list[int] = Field(sa_column=Column(ARRAY(BigInteger), nullable=False))
    computed_at: datetime = _tz(nullable=False)


# The integer figures of a day and wiki, in table order; roll-ups write them and the bot reads them.
DAILY_FIGURES: tuple[str, ...] = tuple(
    c.name
    for c in inspect(DailyWikiStats).columns
    if c.name not in {"day", "wiki", "hourly_changes", "computed_at"}
)


class DailyTopPage(SchemaModel, table=True):
    """The ten most-changed pages of a wiki on a day."""

    __tablename__ = "daily_top_pages"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    wiki: str = Field(sa_column=Column(Text, primary_key=True))
    rank: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    namespace: int | None = Field(default=None, sa_column=Column(Integer))
    title: str = Field(sa_column=Column(Text, nullable=False))
    changes: int = Field(sa_column=Column(BigInteger, nullable=False))


class DailyTopEditor(SchemaModel, table=True):
    """The ten most active editors of a wiki on a day."""

    __tablename__ = "daily_top_editors"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    wiki: str = Field(sa_column=Column(Text, primary_key=True))
    rank: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    user_name: str = Field(sa_column=Column(Text, nullable=False))
    bot: bool = Field(sa_column=Column(Boolean, nullable=False))
    changes: int = Field(sa_column=Column(BigInteger, nullable=False))


class DayRollup(SchemaModel, table=True):
    """State of one UTC day's roll-up: partial (still open) or final, and whether data is missing."""

    __tablename__ = "day_rollups"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    status: str = Field(sa_column=Column(Text, nullable=False))  # a teston.core.statuses.DayStatus
    incomplete: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    events: int = Field(sa_column=Column(BigInteger, nullable=False))
    wikis: int = Field(sa_column=Column(Integer, nullable=False))
    # Highest `received_at` among the rows rolled up: a later arrival means the day is stale.
    max_received_at: datetime | None = _tz()
    computed_at: datetime = _tz(nullable=False)


class DayExport(SchemaModel, table=True):
    """The Parquet export of one UTC day, with the row count verified against PostgreSQL."""

    __tablename__ = "day_exports"

    day: date = Field(sa_column=Column(Date, primary_key=True))
    path: str = Field(sa_column=Column(Text, nullable=False))
    rows: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    max_received_at: datetime | None = _tz()
    exported_at: datetime = _tz(nullable=False)
    verified_at: datetime | None = _tz()


class UserLanguage(SchemaModel, table=True):
    """A Discord user's default wiki for `!recent` and `!stats`."""

    __tablename__ = "user_languages"

    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    wiki: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = _tz(nullable=False, server_default=text("now()"))


class GuildLanguage(SchemaModel, table=True):
    """A Discord server's default wiki, used when the user has none."""

    __tablename__ = "guild_languages"

    guild_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    wiki: str = Field(sa_column=Column(Text, nullable=False))
    set_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    updated_at: datetime = _tz(nullable=False, server_default=text("now()"))


class JobRun(SchemaModel, table=True):
    """One run of a scheduled or manual job, with its outcome and figures."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_kind_started_at", "kind", text("started_at DESC")),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    day: date | None = Field(default=None, sa_column=Column(Date))
    status: str = Field(sa_column=Column(Text, nullable=False))  # a teston.core.statuses.JobStatus
    rows: int | None = Field(default=None, sa_column=Column(BigInteger))
    started_at: datetime = _tz(nullable=False, server_default=text("now()"))
    finished_at: datetime | None = _tz()
    duration_ms: float | None = Field(default=None, sa_column=Column(Double))
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    error: str | None = Field(default=None, sa_column=Column(Text))


class ChannelDigest(SchemaModel, table=True):
    """A daily digest: a wiki's figures for yesterday, posted in a Discord channel daily at `post_at` UTC."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("channel_id", "wiki"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    guild_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    channel_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    wiki: str = Field(sa_column=Column(Text, nullable=False))
    post_at: time = Field(sa_column=Column(Time, nullable=False))
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = _tz(nullable=False, server_default=text("now()"))
    # Set when Discord answered that the channel is gone (404) or closed to TestON (403); `!digest`
    # again in the channel resumes it.
    paused_reason: str | None = Field(default=None, sa_column=Column(Text))
    paused_at: datetime | None = _tz()


class DigestPost(SchemaModel, table=True):
    """One digest's post of one day: claimed by one bot process (the key makes it once), then posted."""

    __tablename__ = "digest_posts"

    digest_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True)
    )
    day: date = Field(sa_column=Column(Date, primary_key=True))
    claimed_by: str = Field(sa_column=Column(Text, nullable=False))
    claimed_at: datetime = _tz(nullable=False)
    posted_at: datetime | None = _tz()
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger))


class Feed(SchemaModel, table=True):
    """A live feed: one wiki's changes, filtered, posted to one Discord channel (`!watch`).

    `cursor` is the arrival of the last change handled; it moves only after Discord accepted the message
    covering it. `pending_to` is written before a message is sent, so a restart resends exactly that
    message (with the same nonce) instead of a different one. A message carrying several feeds of its
    channel gives each of them the same `pending_nonce`, so a restart rebuilds it from all of them.
    """

    __tablename__ = "feeds"
    __table_args__ = (Index("ix_feeds_guild_id", "guild_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    guild_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    channel_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    wiki: str = Field(sa_column=Column(Text, nullable=False))
    filters: str = Field(sa_column=Column(Text, nullable=False))  # the canonical `!watch` filter words
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = _tz(nullable=False, server_default=text("now()"))
    cursor: int = Field(sa_column=Column(BigInteger, nullable=False))
    pending_to: int | None = Field(default=None, sa_column=Column(BigInteger))
    pending_skip: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    pending_nonce: str | None = Field(default=None, sa_column=Column(Text))
    posted: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    skipped: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    last_posted_at: datetime | None = _tz()
    paused_reason: str | None = Field(default=None, sa_column=Column(Text))
    paused_at: datetime | None = _tz()
