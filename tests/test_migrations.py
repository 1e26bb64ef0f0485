"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from casework.db import is_current, make_engine, upgrade
from casework.models import Base


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert is_current(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        indexes = {i["name"] for i in inspect(engine).get_indexes("cases")}
        assert {"ix_cases_reporter_id", "ix_cases_subject_id"} <= indexes
    finally:
        engine.dispose()
