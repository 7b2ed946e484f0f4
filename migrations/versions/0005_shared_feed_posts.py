"""Feed posts shared by a channel's feeds: the nonce of the message a pending step belongs to.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("feeds", sa.Column("pending_nonce", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("feeds", "pending_nonce")
