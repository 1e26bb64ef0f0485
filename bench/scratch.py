"""A throwaway desk for a benchmark: its database (SQLite file or fresh PostgreSQL) and settings."""

from __future__ import annotations

import os
import secrets
import timeit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scheduler.config import Settings, parse_settings

ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
MODERATOR = "asha.moderator@ecareermentor.in"


@contextmanager
def scratch_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database of `kind` ("sqlite" or "postgres"), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.sqlite3'}"
        return
    import psycopg

    name = f"safetydesk_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(folder: Path, url: str, **sections: dict[str, Any]) -> Settings:
    """The desk's settings for a benchmark: a fresh token secret, a Maildir outbox and one
    moderator, plus (or instead of those) the given sections."""
    (folder / "secret").write_text(secrets.token_hex(32))
    document: dict[str, Any] = {
        "desk": {"address": "mentor4u@ecareermentor.in", "token_secret_file": "secret"},
        "database": {"url": url},
        "outbound": {"transport": "maildir", "maildir": "out"},
        "moderators": {"addresses": [MODERATOR]},
        **sections,
    }
    return parse_settings(document, base=folder, environ=dict(os.environ))


def machine_reference() -> str:
    """How fast this machine runs plain Python, so that figures from two machines compare.

    The same benchmark on two of the project's 2-vCPU machines has differed by more than two
    times; a figure is only meaningful beside this line.
    """
    best = min(timeit.repeat("sum(range(100))", number=200_000, repeat=5)) / 200_000
    return f"machine reference: {best * 1e9:.0f} ns per sum(range(100))"
