"""Initial schema: raw events (partitioned by day), quarantine, cursors, roll-ups, preferences, jobs.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_top_editors",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "wiki", "rank", name=op.f("pk_daily_top_editors")),
    )
    op.create_table(
        "daily_top_pages",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("namespace", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "wiki", "rank", name=op.f("pk_daily_top_pages")),
    )
    op.create_table(
        "daily_wiki_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("edits", sa.BigInteger(), nullable=False),
        sa.Column("new_pages", sa.BigInteger(), nullable=False),
        sa.Column("log_actions", sa.BigInteger(), nullable=False),
        sa.Column("categorize", sa.BigInteger(), nullable=False),
        sa.Column("other_types", sa.BigInteger(), nullable=False),
        sa.Column("bot_changes", sa.BigInteger(), nullable=False),
        sa.Column("anonymous_changes", sa.BigInteger(), nullable=False),
        sa.Column("human_changes", sa.BigInteger(), nullable=False),
        sa.Column("content_changes", sa.BigInteger(), nullable=False),
        sa.Column("other_namespace_changes", sa.BigInteger(), nullable=False),
        sa.Column("bytes_added", sa.BigInteger(), nullable=False),
        sa.Column("bytes_removed", sa.BigInteger(), nullable=False),
        sa.Column("net_bytes", sa.BigInteger(), nullable=False),
        sa.Column("distinct_editors", sa.BigInteger(), nullable=False),
        sa.Column("distinct_pages", sa.BigInteger(), nullable=False),
        sa.Column("hourly_changes", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "wiki", name=op.f("pk_daily_wiki_stats")),
    )
    op.create_table(
        "day_arrivals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_day_arrivals")),
    )
    op.create_table(
        "day_exports",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_day_exports")),
    )
    op.create_table(
        "day_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("incomplete", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("wikis", sa.Integer(), nullable=False),
        sa.Column("max_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_day_rollups")),
    )
    op.create_table(
        "guild_languages",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_languages")),
    )
    op.create_table(
        "ingest_gaps",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("gap_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gap_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_gaps")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index(
        "ix_job_runs_kind_started_at",
        "job_runs",
        ["kind", sa.literal_column("started_at DESC")],
        unique=False,
    )
    op.create_table(
        "recent_changes",
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("server_name", sa.Text(), nullable=False),
        sa.Column("lang", sa.Text(), nullable=True),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("user_name", sa.Text(), nullable=True),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.Column("minor", sa.Boolean(), nullable=True),
        sa.Column("patrolled", sa.Boolean(), nullable=True),
        sa.Column("length_old", sa.Integer(), nullable=True),
        sa.Column("length_new", sa.Integer(), nullable=True),
        sa.Column("revision_old", sa.BigInteger(), nullable=True),
        sa.Column("revision_new", sa.BigInteger(), nullable=True),
        sa.Column("rcid", sa.BigInteger(), nullable=True),
        sa.Column("log_type", sa.Text(), nullable=True),
        sa.Column("log_action", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_time", "event_id", name=op.f("pk_recent_changes")),
        postgresql_partition_by="RANGE (event_time)",
    )
    op.create_index(
        "ix_recent_changes_wiki_event_time",
        "recent_changes",
        ["wiki", sa.literal_column("event_time DESC")],
        unique=False,
    )
    op.create_table(
        "rejected_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_events")),
    )
    op.create_table(
        "stream_cursors",
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("last_event_id", sa.Text(), nullable=False),
        sa.Column("last_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_stream_cursors")),
    )
    op.create_table(
        "user_languages",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_languages")),
    )


def downgrade() -> None:
    op.drop_table("user_languages")
    op.drop_table("stream_cursors")
    op.drop_table("rejected_events")
    op.drop_index("ix_recent_changes_wiki_event_time", table_name="recent_changes")
    op.drop_table("recent_changes")
    op.drop_index("ix_job_runs_kind_started_at", table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_table("ingest_gaps")
    op.drop_table("guild_languages")
    op.drop_table("day_rollups")
    op.drop_table("day_exports")
    op.drop_table("day_arrivals")
    op.drop_table("daily_wiki_stats")
    op.drop_table("daily_top_pages")
    op.drop_table("daily_top_editors")
