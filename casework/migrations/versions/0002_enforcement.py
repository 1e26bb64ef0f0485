"""Enforcement: actions (warnings, strikes, bans), restrictions and appeals.

Revision ID: 0002_enforcement
Revises: 0001_initial
"""

from alembic import op
import sqlalchemy as sa


revision = "0002_enforcement"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("step", "warning", "strike", "ban"), nullable=False),
        sa.Column(
            "status",
            _enum("actionstatus", "pending", "active", "expired", "rejected", "overturned", "revoked"),
            nullable=False,
        ),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=True),
        sa.Column("issued_by", sa.String(length=320), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("effective_at", sa.DateTime(), nullable=True),
        sa.Column("counts_until", sa.DateTime(), nullable=True),
        sa.Column("appeal_until", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=320), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index("ix_actions_case_id", ["case_id"], unique=False)
        batch_op.create_index("ix_actions_person_id", ["person_id"], unique=False)
        batch_op.create_index("ix_actions_due", ["status", "counts_until"], unique=False)

    op.create_table(
        "restrictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("scope", _enum("restrictionscope", "account", "program"), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            _enum("restrictionkind", "suspension", "ban", "program-restriction"),
            nullable=False,
        ),
        sa.Column(
            "status", _enum("restrictionstatus", "active", "ended", "lifted"), nullable=False
        ),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("restrictions", schema=None) as batch_op:
        batch_op.create_index("ix_restrictions_action_id", ["action_id"], unique=False)
        batch_op.create_index("ix_restrictions_case_id", ["case_id"], unique=False)
        batch_op.create_index("ix_restrictions_person_id", ["person_id"], unique=False)
        batch_op.create_index("ix_restrictions_due", ["status", "until"], unique=False)

    op.create_table(
        "appeals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column(
            "status",
            _enum("appealstatus", "open", "upheld", "overturned", "withdrawn"),
            nullable=False,
        ),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.create_index("ix_appeals_action_id", ["action_id"], unique=False)
        batch_op.create_index("ix_appeals_case_id", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_table("appeals")
    op.drop_table("restrictions")
    op.drop_table("actions")
