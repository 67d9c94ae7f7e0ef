"""session settings: a session's model and parameters, its context's start, and deletion; reply
versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 09:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `model`, `temperature`, `max_tokens`, `context_since` and `deleted_at` to
    `sessions` (all null: the catalogue's default model with its own parameters, a context
    never cleared, not deleted); and `version` to `messages` (null: a reply's first)."""
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model", text(length=48), nullable=True))
        batch_op.add_column(sa.Column("temperature", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("context_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("version")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("context_since")
        batch_op.drop_column("max_tokens")
        batch_op.drop_column("temperature")
        batch_op.drop_column("model")
