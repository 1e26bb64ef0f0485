"""One mailbox consumer at a time: a PostgreSQL advisory lock, or a file lock beside SQLite."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, text

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

    def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:n)"), {"n": lock_number(self.key)}
                )
            finally:
                connection.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire_advisory(self) -> bool:
        connection = self.engine.connect()
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:n)"), {"n": lock_number(self.key)}
        ).scalar()
        connection.commit()
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
