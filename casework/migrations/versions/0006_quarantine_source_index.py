"""Index where each quarantined message came from: every IMAP batch looks its UIDs up there.

Revision ID: 0006_quarantine_source_index
Revises: 0005_case_people_indexes
Create Date: 2026-11-27 18:40:00
"""

from alembic import op


revision = "0006_quarantine_source_index"
down_revision = "0005_case_people_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_quarantine_source", "quarantine", ["source"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_source", table_name="quarantine")
