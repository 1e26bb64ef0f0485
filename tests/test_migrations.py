"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text

from casework.db import MIGRATIONS, is_current, make_engine, upgrade
from casework.models import Base, OutboxMessage


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


COMPRESSED = [
    ("inbound_messages", "raw"),
    ("inbound_messages", "body_text"),
    ("outbox", "raw"),
    ("quarantine", "raw"),
]


def compression_of(connection: Connection) -> dict[tuple[str, str], str]:
    rows = connection.execute(
        text(
            "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relname IN ('inbound_messages', 'outbox', 'quarantine')"
            " AND a.attname IN ('raw', 'body_text')"
        )
    )
    return {(table, column): method for table, column, method in rows}


@pytest.mark.postgres
def test_large_values_are_compressed_with_lz4_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            assert compression_of(connection) == {column: "l" for column in COMPRESSED}
            raw = ("A mentor asked me to pay outside the platform.\r\n" * 200).encode()
            connection.execute(
                insert(OutboxMessage).values(
                    created_at=datetime(2027, 1, 4, 9, tzinfo=UTC),
                    template="reporter/acknowledgement",
                    message_id="<lz4@ecareermentor.in>",
                    recipient="student@example.com",
                    subject="s",
                    raw=raw,
                    next_attempt_at=datetime(2027, 1, 4, 9, tzinfo=UTC),
                )
            )
            stored = connection.execute(
                text("SELECT pg_column_compression(raw), raw FROM outbox")
            ).one()
        assert stored[0] == "lz4" and bytes(stored[1]) == raw

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007_hold_recheck")
            assert set(compression_of(connection).values()) == {""}  # the server's default
            # what was written with lz4 still reads back
            assert bytes(connection.execute(text("SELECT raw FROM outbox")).scalar_one()) == raw
    finally:
        engine.dispose()
