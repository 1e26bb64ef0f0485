"""`safetydesk check` on PostgreSQL: tables changed much since their last ANALYZE are named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from casework.models import Person
from scheduler.app import App
from scheduler.check import STALE_ROWS, check_statistics, checks_for
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.postgres


NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def add_people(app: App, count: int) -> None:
    """`count` new people, their table kept from autovacuum so that only the test analyzes it."""
    rows = [{"email": f"p{n}@example.com", "name": "", "created_at": NOW} for n in range(count)]
    with app.engine.begin() as connection:
        connection.execute(text("ALTER TABLE people SET (autovacuum_enabled = false)"))
        connection.execute(insert(Person), rows)
        connection.execute(text("SELECT pg_stat_force_next_flush()"))


def test_a_table_grown_since_its_last_analyze_is_named_until_it_is_analyzed(
    pg_app: App,
) -> None:
    with pg_app.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    assert check_statistics(pg_app.settings).ok

    add_people(pg_app, 1500)
    stale = check_statistics(pg_app.settings)
    assert not stale.ok
    assert "people (1,500 of 1,500 rows changed since)" in stale.detail
    assert "cases" not in stale.detail

    with pg_app.engine.begin() as connection:
        connection.execute(text("ANALYZE people"))
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
    fresh = check_statistics(pg_app.settings)
    assert fresh.ok and fresh.detail.startswith("fresh (autovacuum ")


def test_fewer_changes_than_the_threshold_are_not_reported(pg_app: App) -> None:
    add_people(pg_app, STALE_ROWS - 1)
    assert check_statistics(pg_app.settings).ok


def test_only_postgresql_desks_are_checked(
    make_settings: SettingsFactory, postgres_url: str, sqlite_url: str
) -> None:
    def names(url: str) -> list[str]:
        return [check().name for check in checks_for(make_settings(url))]

    assert "statistics" in names(postgres_url)
    assert "statistics" not in names(sqlite_url)
