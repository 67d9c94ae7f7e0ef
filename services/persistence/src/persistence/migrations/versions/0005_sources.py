"""sources: what a reply drew on (the retrieval hook's documents, the model's citations)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:45:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `messages.sources` (JSON; null: none)."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sources")
