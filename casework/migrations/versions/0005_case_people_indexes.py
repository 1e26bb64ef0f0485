"""Index the people on a case, so a person's history is found without reading every case.

Revision ID: 0005_case_people_indexes
Revises: 0004_hygiene
Create Date: 2026-11-27 15:20:00
"""

from alembic import op


revision = "0005_case_people_indexes"
down_revision = "0004_hygiene"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_reporter_id", "cases", ["reporter_id"])
    op.create_index("ix_cases_subject_id", "cases", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_cases_subject_id", table_name="cases")
    op.drop_index("ix_cases_reporter_id", table_name="cases")
