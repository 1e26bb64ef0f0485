"""Moderator commands: reminder and digest bookkeeping.

Revision ID: 0003_commands
Revises: 0002_enforcement
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_commands"
down_revision = "0002_enforcement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("unassigned", "unanswered", name="reminderkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("waiting_since", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "kind", "waiting_since"),
    )
    with op.batch_alter_table("case_reminders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_reminders_case_id"), ["case_id"], unique=False)
    op.create_table(
        "digest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("open_cases", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
    with op.batch_alter_table("case_reminders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_reminders_case_id"))
    op.drop_table("case_reminders")
