"""The embedded SQLite database: every commit is durable before the mailbox hears of it."""

from __future__ import annotations

from sqlalchemy import text

from casework.db import make_engine


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
