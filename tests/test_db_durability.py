"""The embedded SQLite database: every commit is durable before the mailbox hears of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from casework.db import make_engine, transaction
from casework.models import AuditEvent
from scheduler.app import App


def test_sqlite_commits_are_synced_to_disk_in_wal_mode(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            # 2 = FULL: the WAL is synced at every commit, so a power cut cannot undo a commit
            # after which a message was moved out of the inbox. (NORMAL, 1, would allow it.)
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 2
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_times_are_stored_as_utc_and_read_back_aware(app: App) -> None:
    """A UTC time is stored as it is, a time in another zone at the same instant in UTC, and a
    naive time is refused: nothing of its transaction is kept."""
    utc = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    india = datetime(2027, 1, 4, 14, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with transaction(app.sessions) as session:
        session.add_all(
            [AuditEvent(at=utc, actor="a", kind="k"), AuditEvent(at=india, actor="b", kind="k")]
        )
    with app.sessions() as session:
        stored = session.execute(select(AuditEvent.actor, AuditEvent.at).order_by(AuditEvent.actor))
        assert [(actor, at, at.tzinfo) for actor, at in stored] == [
            ("a", utc, UTC),
            ("b", utc, UTC),
        ]
    with (
        pytest.raises(StatementError, match="naive datetime"),
        transaction(app.sessions) as session,
    ):
        session.add(AuditEvent(at=datetime(2027, 1, 4, 9, 0), actor="c", kind="k"))
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
