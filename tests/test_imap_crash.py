"""The worker killed at random points while it reads the mailbox: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.db import make_engine, make_sessions, upgrade
from casework.models import Case, InboundMessage, OutboxMessage, QuarantineEntry
from tests.imap_servers import ImapServer, write_worker_config
from tests.mail import make_mail

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 300


def write_config(
    tmp_path: Path, server: ImapServer, url: str | None = None, **imap: object
) -> Path:
    """A worker config with a quick poll and quick reconnects, on `url` (by default SQLite in
    `tmp_path`)."""
    url = url or sqlite_url(tmp_path)
    quick = {"poll_interval": "PT2S", "timeout": "PT10S", "reconnect_min": "PT1S"}
    return write_worker_config(tmp_path, server, url, **quick, reconnect_max="PT2S", **imap)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'desk.sqlite3'}"


def worker(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "--config", str(config), "run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    imap_server: ImapServer, tmp_path: Path
) -> None:
    kill_at_random_points(imap_server, tmp_path, sqlite_url(tmp_path))


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_on_postgresql_loses_and_duplicates_nothing(
    pymap_server: ImapServer, postgres_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL a group's new rows are held, with ids drawn ahead, until its commit."""
    kill_at_random_points(pymap_server, tmp_path, postgres_url)


def kill_at_random_points(server: ImapServer, tmp_path: Path, url: str) -> None:
    """SIGKILL the worker at random points while it reads 300 reports; then prove each became
    exactly one record, one case and one acknowledgement, and sits once in Processed."""
    config = write_config(tmp_path, server, url, batch_size=25)
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessions(engine)

    def recorded() -> int:
        with sessions() as session:
            return int(session.scalar(select(func.count()).select_from(InboundMessage)) or 0)

    expected = [f"<crash-{i}@client.example>" for i in range(MESSAGES)]
    mails = [
        make_mail(sender=f"student{i}@example.com", subject=f"Report {i}", message_id=expected[i])
        for i in range(MESSAGES)
    ]
    with server.client() as client:
        client.multiappend("INBOX", mails)

    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    progress: list[int] = []
    started = time.monotonic()
    for _ in range(6):
        process = worker(config)
        # Kill only once it is really working: a random amount of progress since its start
        # (whatever the machine's speed), then a random moment within the work that follows.
        target = recorded() + chance.randint(1, MESSAGES // 4)
        deadline = time.monotonic() + 15
        while recorded() < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(chance.uniform(0.0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        progress.append(recorded())
        if progress[-1] >= MESSAGES:
            break

    final = worker(config, "--once")
    _, stderr = final.communicate(timeout=60)
    assert final.returncode == 0, stderr.decode(errors="replace")
    elapsed = time.monotonic() - started

    # The kills hit the worker mid-way, more than once (otherwise this proved nothing).
    assert sum(1 for n in progress if 0 < n < MESSAGES) >= 2, (seed, progress)

    with sessions() as session:
        rows = session.execute(
            select(InboundMessage.message_id, InboundMessage.case_id, InboundMessage.disposition)
        ).all()
        cases = int(session.scalar(select(func.count()).select_from(Case)) or 0)
        acks = Counter(
            session.scalars(
                select(OutboxMessage.case_id).where(
                    OutboxMessage.template == "reporter/acknowledgement"
                )
            )
        )
        quarantined = int(session.scalar(select(func.count()).select_from(QuarantineEntry)) or 0)
    engine.dispose()

    per_message = Counter(message_id for message_id, _, _ in rows)
    assert sorted(per_message) == sorted(expected), (seed, progress)
    assert set(per_message.values()) == {1}, (seed, progress)
    case_ids = [case_id for _, case_id, _ in rows]
    assert None not in case_ids
    assert len(set(case_ids)) == MESSAGES == cases
    assert len(acks) == MESSAGES and set(acks.values()) == {1}
    assert quarantined == 0
    assert server.uids("INBOX") == []
    assert server.message_ids("Processed") == sorted(expected)
    assert elapsed < 60, (seed, progress, elapsed)


@pytest.mark.slow
def test_sigterm_finishes_the_current_message_and_exits_cleanly(
    pymap_server: ImapServer, tmp_path: Path
) -> None:
    server = pymap_server
    config = write_config(tmp_path, server)
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    sessions = make_sessions(engine)
    process = worker(config)
    try:
        server.deliver(make_mail(message_id="<before-term@client.example>"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with sessions() as session:
                if session.scalar(select(func.count()).select_from(InboundMessage)):
                    break
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode(errors="replace")
    with sessions() as session:
        assert session.scalars(select(InboundMessage.message_id)).all() == [
            "<before-term@client.example>"
        ]
    engine.dispose()
    assert server.message_ids("Processed") == ["<before-term@client.example>"]
