"""`safetydesk check` on PostgreSQL: tables changed much since their last ANALYZE are named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from casework.db import make_engine, upgrade
from casework.models import Person
from scheduler.check import STALE_ROWS, check_statistics, checks_for
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.postgres


def test_a_table_grown_since_its_last_analyze_is_named_until_it_is_analyzed(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    settings = make_settings(postgres_url)
    engine = make_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as connection:
        # Autovacuum, if the server runs it, must not analyze the table behind the test's back.
        connection.execute(text("ALTER TABLE people SET (autovacuum_enabled = false)"))
        connection.execute(text("ANALYZE"))
    assert check_statistics(settings).ok

    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    rows = [{"email": f"p{n}@example.com", "name": "", "created_at": now} for n in range(1500)]
    with engine.begin() as connection:
        connection.execute(insert(Person), rows)
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
    stale = check_statistics(settings)
    assert not stale.ok
    assert "people (1,500 of 1,500 rows changed since)" in stale.detail
    assert "cases" not in stale.detail

    with engine.begin() as connection:
        connection.execute(text("ANALYZE people"))
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
    fresh = check_statistics(settings)
    assert fresh.ok and fresh.detail.startswith("fresh (autovacuum ")
    engine.dispose()


def test_fewer_changes_than_the_threshold_are_not_reported(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    settings = make_settings(postgres_url)
    engine = make_engine(postgres_url)
    upgrade(engine)
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    rows = [
        {"email": f"p{n}@example.com", "name": "", "created_at": now} for n in range(STALE_ROWS - 1)
    ]
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE people SET (autovacuum_enabled = false)"))
        connection.execute(insert(Person), rows)
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
    assert check_statistics(settings).ok
    engine.dispose()


def test_only_postgresql_desks_are_checked(
    make_settings: SettingsFactory, postgres_url: str, sqlite_url: str
) -> None:
    def names(url: str) -> list[str]:
        return [check().name for check in checks_for(make_settings(url))]

    assert "statistics" in names(postgres_url)
    assert "statistics" not in names(sqlite_url)
