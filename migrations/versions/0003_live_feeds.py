"""Live feeds: an arrival number on every stored change, and the feeds table.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # CACHE 1 (the default): numbers follow the order of the statements drawing them, across sessions.
    op.execute("CREATE SEQUENCE recent_changes_arrival_seq AS bigint")
    # Added without a default, then given one: stored rows keep NULL (no table rewrite), new rows a number.
    op.add_column("recent_changes", sa.Column("arrival", sa.BigInteger(), nullable=True))
    op.execute(
        "ALTER TABLE recent_changes ALTER COLUMN arrival SET DEFAULT nextval('recent_changes_arrival_seq')"
    )
    op.execute("ALTER SEQUENCE recent_changes_arrival_seq OWNED BY recent_changes.arrival")
    op.create_index("ix_recent_changes_wiki_arrival", "recent_changes", ["wiki", "arrival"], unique=False)
    op.create_table(
        "feeds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("wiki", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("pending_to", sa.BigInteger(), nullable=True),
        sa.Column("pending_skip", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("posted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
    )
    op.create_index("ix_feeds_guild_id", "feeds", ["guild_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_feeds_guild_id", table_name="feeds")
    op.drop_table("feeds")
    op.drop_index("ix_recent_changes_wiki_arrival", table_name="recent_changes")
    op.drop_column("recent_changes", "arrival")  # drops the sequence it owns
