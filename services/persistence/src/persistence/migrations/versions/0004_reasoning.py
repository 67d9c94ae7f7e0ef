"""reasoning: what a model reasoned before its reply, and the tokens it spent on it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 10:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `messages.reasoning` (null: none) and `usage.reasoning_tokens` (0 until now)."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reasoning", sa.Text(), nullable=True))
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_column("reasoning_tokens")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reasoning")
