"""One mailbox consumer at a time: a PostgreSQL advisory lock, or a file lock beside SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def lock_number(key: str) -> int:
    """A stable signed 64-bit number for `key` (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


@dataclass
class ConsumerLock:
    """Held by the one worker that reads mailbox `key`; other workers skip their poll.

    Several workers may share a PostgreSQL database for the outbox and the sweeps (row locks keep
    those correct); reading the same mailbox twice would only produce duplicate records, so the
    reader is elected with a session-level advisory lock that the server drops if the holder
    dies. With SQLite (one host) an flock on a file beside the database does the same.
    """

    engine: Engine
    key: str
    _connection: Connection | None = field(default=None, init=False)
    _fd: int | None = field(default=None, init=False)

    @property
    def held(self) -> bool:
        return self._connection is not None or self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            return self._acquire_advisory()
        return self._acquire_file()

    def still_held(self) -> bool:
        """False when the lock went with its connection (the database restarted, the session
        was ended): the server has freed it, and another worker may hold it already.

        A PostgreSQL session lock lasts as long as its session, so a live session still holds
        it. An flock lasts as long as this process.
        """
        if self.engine.dialect.name != "postgresql":
            return True
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.execute(text("SELECT 1"))
            connection.commit()
        except SQLAlchemyError:
            self._connection = None
            with contextlib.suppress(SQLAlchemyError):
                connection.invalidate()
            return False
        return True

    def release(self) -> None:
        """Give the lock up; a database that cannot be told frees it with the connection."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:n)"), {"n": lock_number(self.key)}
                )
            except SQLAlchemyError:
                with contextlib.suppress(SQLAlchemyError):
                    connection.invalidate()
            finally:
                with contextlib.suppress(SQLAlchemyError):
                    connection.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire_advisory(self) -> bool:
        connection = self.engine.connect()
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:n)"), {"n": lock_number(self.key)}
            ).scalar()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if got:
            self._connection = connection
            return True
        connection.close()
        return False

    def _acquire_file(self) -> bool:
        database = self.engine.url.database or ""
        if database in ("", ":memory:"):
            return True  # a private in-memory database has one consumer by construction
        path = Path(f"{database}.{lock_number(self.key) & 0xFFFFFFFF:08x}.consumer.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True


@dataclass
class LockWatch:
    """Asks `lock` whether it is still held, at most once every `every` seconds.

    The mailbox thread consults it between messages: a worker whose lock went with its
    database connection stops reading within `every` seconds and one message. A message that
    it and a standby which took the lock over both read in that time is recorded once: the
    database refuses a second record of the same mailbox UID.
    """

    lock: ConsumerLock
    every: float
    monotonic: Callable[[], float]
    lost: bool = False
    _checked_at: float | None = field(default=None, init=False)

    def is_lost(self) -> bool:
        if self.lost:
            return True
        now = self.monotonic()
        if self._checked_at is None or now - self._checked_at >= self.every:
            self._checked_at = now
            self.lost = not self.lock.still_held()
        return self.lost
