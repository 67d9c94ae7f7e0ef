"""model calls: every attempt's model call, for billing

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 07:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `model_calls`, with a row for every reply recorded so far (its answered call)."""
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "model_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", text(length=64), nullable=False),
        sa.Column("message_id", text(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("user_id", text(length=128), nullable=True),
        sa.Column("model", text(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("outcome", text(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "message_id", "attempt"),
    )
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_calls_created_at"), ["created_at"])
        batch_op.create_index(batch_op.f("ix_model_calls_session_id"), ["session_id"])
        batch_op.create_index(batch_op.f("ix_model_calls_user_id"), ["user_id"])
    op.execute(
        "INSERT INTO model_calls (session_id, message_id, attempt, user_id, model,"
        " prompt_tokens, completion_tokens, total_tokens, estimated, cost_usd, outcome,"
        " created_at) SELECT session_id, message_id, attempt, user_id, model, prompt_tokens,"
        " completion_tokens, total_tokens, estimated, cost_usd, 'answered', created_at"
        " FROM usage"
    )


def downgrade() -> None:
    """Drop `model_calls`."""
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_calls_user_id"))
        batch_op.drop_index(batch_op.f("ix_model_calls_session_id"))
        batch_op.drop_index(batch_op.f("ix_model_calls_created_at"))
    op.drop_table("model_calls")
