"""Several workers on one database: only one reads the mailbox at a time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.db import make_engine
from casework.models import InboundMessage
from scheduler.app import App, mailbox_key
from scheduler.consumer_lock import ConsumerLock
from tests.mail import make_mail


def test_the_lock_is_held_by_one_worker_at_a_time(app: App) -> None:
    key = mailbox_key(app.settings)
    other_engine = make_engine(app.settings.database.url)  # another worker's connections
    first, second = ConsumerLock(app.engine, key), ConsumerLock(other_engine, key)
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert ConsumerLock(other_engine, "another mailbox").acquire() is True
        first.release()
        assert second.acquire() is True
        assert first.acquire() is False
    finally:
        first.release()
        second.release()
        other_engine.dispose()


def test_a_worker_skips_its_poll_while_another_reads_the_mailbox(
    app: App, clock: FixedClock, tmp_path: Path
) -> None:
    new = tmp_path / "in" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "1.eml").write_bytes(make_mail())
    other_engine = make_engine(app.settings.database.url)
    reader = ConsumerLock(other_engine, mailbox_key(app.settings))
    try:
        assert reader.acquire()
        assert app.poll(clock.now()) == []
        assert [p.name for p in new.iterdir()] == ["1.eml"]  # left for the reader
        reader.release()
        results = app.poll(clock.now())
        assert [r.case_id for r in results] == [1]
        assert list(new.iterdir()) == []
    finally:
        reader.release()
        other_engine.dispose()
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1


def test_a_killed_holder_frees_the_lock(app: App) -> None:
    """PostgreSQL drops a session's advisory lock with its connection; the kernel drops flock."""
    key = mailbox_key(app.settings)
    script = (
        "import sys, time\n"
        "from casework.db import make_engine\n"
        "from scheduler.consumer_lock import ConsumerLock\n"
        "lock = ConsumerLock(make_engine(sys.argv[1]), sys.argv[2])\n"
        "print('held' if lock.acquire() else 'refused', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, app.settings.database.url, key],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        successor = ConsumerLock(app.engine, key)
        assert successor.acquire() is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # The server notices the closed connection on its own schedule: give it up to 5 s.
        deadline = time.monotonic() + 5
        while not successor.acquire() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert successor.held
        successor.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)
