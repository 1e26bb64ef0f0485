"""Mail hygiene: bounces tied to outbox messages, suppressed addresses, held outbound mail.

Revision ID: 0004_hygiene
Revises: 0003_commands
Create Date: 2026-11-27 12:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0004_hygiene"
down_revision = "0003_commands"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("hard", "soft", "unknown", name="bouncekind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounces_inbound_id"), ["inbound_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_outbox_id"), ["outbox_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_recipient"), ["recipient"], unique=False)

    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("bounces", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=True),
        sa.Column("cleared_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suppressions_address"), ["address"], unique=False)

    op.create_table(
        "outbox_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "address-cap", "global-cap", "suppressed",
                name="holdkind", native_enum=False, length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_holds_outbox_id"), ["outbox_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_holds_outbox_id"))
    op.drop_table("outbox_holds")
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_address"))
    op.drop_table("suppressions")
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounces_recipient"))
        batch_op.drop_index(batch_op.f("ix_bounces_case_id"))
        batch_op.drop_index(batch_op.f("ix_bounces_outbox_id"))
        batch_op.drop_index(batch_op.f("ix_bounces_inbound_id"))
    op.drop_table("bounces")
