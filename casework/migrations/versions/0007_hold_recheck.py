"""When each held message could first be released, so a claim reads only those that may go.

Revision ID: 0007_hold_recheck
Revises: 0006_quarantine_source_index
Create Date: 2026-11-27 18:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0007_hold_recheck"
down_revision = "0006_quarantine_source_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Holds made before this have no time: the next claim looks at them and sets one.
    with op.batch_alter_table("outbox_holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recheck_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_outbox_holds_open", ["released_at", "recheck_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_holds_open")
        batch_op.drop_column("recheck_at")
