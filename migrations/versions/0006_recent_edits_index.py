"""The newest human edits of a wiki: a partial index for `!recent`'s default view.

`!recent` leaves out bots and category changes unless asked. On a wiki whose changes are nearly all
made by bots (cebwiki, cewiki), the wiki's (wiki, event_time) index holds rows that are all filtered
out, so the newest ten human edits meant reading every stored change of the wiki: seconds at 10M rows.
This index holds only the rows the default view shows.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_recent_changes_wiki_event_time_edits",
        "recent_changes",
        ["wiki", sa.literal_column("event_time DESC")],
        unique=False,
        postgresql_where=sa.text("NOT bot AND type <> 'categorize'"),
    )


def downgrade() -> None:
    op.drop_index("ix_recent_changes_wiki_event_time_edits", table_name="recent_changes")
