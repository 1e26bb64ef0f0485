"""Shared fixtures: a moving clock, throwaway databases, settings and a wired app."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from casework.clock import FixedClock
from scheduler.app import App, build_app
from scheduler.config import Settings, parse_settings
from tests.desk_helpers import TRUSTED

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REQUIRE_SERVICES = os.environ.get("SAFETYDESK_REQUIRE_SERVICES") == "1"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"  # for psycopg itself
pytest_plugins = ["tests.imap_servers"]
MODERATORS = ["asha.moderator@ecareermentor.in", "ravi.moderator@ecareermentor.in"]


def service_missing(reason: str) -> None:
    """Skip with the reason, or fail when CI says every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2027, 1, 4, 9, 0, tzinfo=UTC))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    import psycopg

    name = f"safetydesk_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(
            PG_ADMIN_DSN,
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as error:
        service_missing(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'desk.sqlite3'}"


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings as a config file would give them; keyword sections override the defaults."""
    secret = tmp_path / "token-secret"
    secret.write_text(secrets.token_hex(32))

    def make(url: str, **sections: dict[str, Any]) -> Settings:
        document: dict[str, Any] = {
            "desk": {"address": "mentor4u@ecareermentor.in", "token_secret_file": str(secret)},
            "database": {"url": url},
            "intake": {"source": "maildir", "maildir": str(tmp_path / "in")},
            "outbound": {"transport": "maildir", "maildir": str(tmp_path / "out")},
            "moderators": {"addresses": MODERATORS, "require_authenticated": False},
        }
        for name, values in sections.items():
            section = document.setdefault(name, {})
            for key, value in values.items():
                if isinstance(value, dict):
                    section.setdefault(key, {}).update(value)
                else:
                    section[key] = value
        return parse_settings(document, base=tmp_path, environ=dict(os.environ))

    return make


@pytest.fixture
def app(make_settings: SettingsFactory, db_url: str) -> Iterator[App]:
    """A migrated app on SQLite and on PostgreSQL, delivering into a Maildir."""
    built = build_app(make_settings(db_url), migrate=True)
    yield built
    built.engine.dispose()


@contextmanager
def noting_statements(engine: Engine) -> Iterator[list[str]]:
    """The first words of every statement `engine` sends within the block."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


@pytest.fixture
def statements(app: App) -> Iterator[list[str]]:
    """The first words of every statement the app's engine sends while the test runs."""
    with noting_statements(app.engine) as seen:
        yield seen


@pytest.fixture
def deployed_desk(make_settings: SettingsFactory, db_url: str) -> Iterator[App]:
    """The desk as deployed: moderators must be authenticated by our own mail server."""
    settings = make_settings(
        db_url,
        moderators={"require_authenticated": True, "trusted_authserv_ids": [TRUSTED]},
    )
    built = build_app(settings, migrate=True)
    yield built
    built.engine.dispose()


@pytest.fixture
def sqlite_app(make_settings: SettingsFactory, sqlite_url: str) -> Iterator[App]:
    built = build_app(make_settings(sqlite_url), migrate=True)
    yield built
    built.engine.dispose()


@pytest.fixture
def pg_app(make_settings: SettingsFactory, postgres_url: str) -> Iterator[App]:
    """A migrated app on PostgreSQL alone, for what only PostgreSQL has."""
    built = build_app(make_settings(postgres_url), migrate=True)
    yield built
    built.engine.dispose()
