"""The mailbox thread and its lock when the database goes away: it stands by, never reads twice."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from casework.clock import FixedClock
from casework.db import make_engine
from casework.models import Case, InboundMessage, OutboxMessage, QuarantineEntry
from intake.pipeline import Outcome, Result, SourceRef
from scheduler.app import App, mailbox_key
from scheduler.config import Settings
from scheduler.consumer_lock import ConsumerLock, LockWatch
from scheduler.imap_intake import start_imap_consumer
from tests.conftest import PG_ADMIN_DSN
from tests.desk_helpers import AppPipeline
from tests.imap_servers import PROCESSED, ImapServer, wait_until
from tests.mail import make_mail

pytestmark = pytest.mark.postgres


def end_lock_sessions(url: str) -> int:
    """End every session holding an advisory lock in the database of `url`, as a restart would."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
            "JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = %s",
            (database,),
        ).fetchall()
    return len(ended)


def inbound_count(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(InboundMessage)) or 0)


class CountedLock(ConsumerLock):
    """The real lock, counting the worker's attempts to take it; `gate` holds an attempt back
    (the test lets a standby take the lock first, as a faster host would)."""

    attempts = 0

    def __init__(self, engine: Engine, key: str) -> None:
        super().__init__(engine, key)
        self.gate = threading.Event()
        self.gate.set()

    def acquire(self) -> bool:
        if not self.held:
            assert self.gate.wait(10), "the test never opened the gate"
        self.attempts += 1
        return super().acquire()


@pytest.fixture
def pg_app(
    pymap_server: ImapServer,
    imap_settings: Callable[..., Settings],
    build_apps: Callable[[Settings], App],
    postgres_url: str,
) -> App:
    return build_apps(imap_settings(pymap_server, postgres_url, poll_interval="PT1S"))


@pytest.fixture
def consumers(clock: FixedClock) -> Iterator[Callable[[App, ConsumerLock], threading.Thread]]:
    """Starts mailbox threads the way the worker does; stops and joins them afterwards."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(app: App, lock: ConsumerLock) -> threading.Thread:
        stop = threading.Event()
        thread = start_imap_consumer(
            app.settings, app.pipeline, app.sessions, clock, stop, lock, lock_check_seconds=0.2
        )
        started.append((stop, thread))
        return thread

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_lock_that_went_with_its_connection_is_known_lost(pg_app: App) -> None:
    key = mailbox_key(pg_app.settings)
    other = make_engine(pg_app.settings.database.url)
    lock, successor = ConsumerLock(pg_app.engine, key), ConsumerLock(other, key)
    try:
        assert lock.acquire() and lock.still_held()
        assert end_lock_sessions(pg_app.settings.database.url) == 1
        assert lock.still_held() is False
        assert not lock.held
        assert successor.acquire() is True
        lock.release()  # harmless once lost: the successor keeps the lock
        assert ConsumerLock(pg_app.engine, key).acquire() is False
    finally:
        successor.release()
        other.dispose()


def test_the_watch_asks_at_most_once_per_interval(pg_app: App) -> None:
    lock = ConsumerLock(pg_app.engine, mailbox_key(pg_app.settings))
    ticks = iter([0.0, 0.5, 0.9, 1.0, 1.1])
    watch = LockWatch(lock, 1.0, lambda: next(ticks))
    try:
        assert lock.acquire()
        assert watch.is_lost() is False  # asked at 0.0
        end_lock_sessions(pg_app.settings.database.url)
        assert watch.is_lost() is False  # 0.5: not asked again yet
        assert watch.is_lost() is False  # 0.9
        assert watch.is_lost() is True  # 1.0: asked, and the lock is gone
        assert watch.is_lost() is True  # stays lost without asking
    finally:
        lock.release()


def test_a_reader_that_lost_its_lock_stops_reading_until_it_has_it_again(
    pg_app: App,
    pymap_server: ImapServer,
    consumers: Callable[[App, ConsumerLock], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.imap_intake")
    key = mailbox_key(pg_app.settings)
    mine = CountedLock(pg_app.engine, key)
    other_engine = make_engine(pg_app.settings.database.url)
    other = ConsumerLock(other_engine, key)  # a standby worker on another host
    try:
        pymap_server.deliver(make_mail(message_id="<before@client.example>"))
        consumers(pg_app, mine)
        wait_until(lambda: inbound_count(pg_app) == 1, 15)

        mine.gate.clear()  # the standby is the first to try once the lock is free
        end_lock_sessions(pg_app.settings.database.url)  # e.g. PostgreSQL restarted
        wait_until(lambda: other.acquire(), 10)  # the standby takes over at once
        mine.gate.set()
        wait_until(lambda: "lost the lock" in caplog.text, 10)
        tried = mine.attempts

        pymap_server.deliver(make_mail(message_id="<while-other-holds@client.example>"))
        # The old reader has tried the lock twice since this message came, and stood by.
        wait_until(lambda: mine.attempts >= tried + 2, 10)
        assert "taking over" not in caplog.text
        assert inbound_count(pg_app) == 1
        assert pymap_server.message_ids("INBOX") == ["<while-other-holds@client.example>"]

        other.release()  # the standby stops: the first worker takes over again
        wait_until(lambda: inbound_count(pg_app) == 2, 15)
        assert "taking over" in caplog.text
        assert pymap_server.message_ids(PROCESSED) == [
            "<before@client.example>",
            "<while-other-holds@client.example>",
        ]
    finally:
        other.release()
        other_engine.dispose()


def test_a_database_down_while_taking_the_lock_does_not_stop_the_worker(
    pg_app: App,
    pymap_server: ImapServer,
    consumers: Callable[[App, ConsumerLock], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.imap_intake")
    # The lock's database does not exist yet: every attempt to take the lock fails.
    later = f"safetydesk_test_later_{uuid.uuid4().hex[:12]}"
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{later}")
    lock = ConsumerLock(engine, mailbox_key(pg_app.settings))
    pymap_server.deliver(make_mail(message_id="<waiting@client.example>"))
    try:
        thread = consumers(pg_app, lock)
        wait_until(lambda: "database unavailable" in caplog.text, 10)
        assert any(r.levelno == logging.WARNING and "not read" in r.message for r in caplog.records)
        assert thread.is_alive()
        assert inbound_count(pg_app) == 0

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{later}"')
        wait_until(lambda: inbound_count(pg_app) == 1, 15)
        assert thread.is_alive()
        assert "IMAP intake stopped" not in caplog.text
        assert pymap_server.message_ids(PROCESSED) == ["<waiting@client.example>"]
    finally:
        lock.release()
        engine.dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{later}" WITH (FORCE)')


class HeldOpenPipeline(AppPipeline):
    """The real pipeline, holding its transaction open after the work until told to commit."""

    def __init__(self, app: App, commit: threading.Event, working: threading.Event) -> None:
        super().__init__(app)
        self._commit, self._working = commit, working

    def after_handling(self, session: Session) -> None:
        session.flush()
        self._working.set()
        assert self._commit.wait(30)


def test_two_readers_of_one_message_record_it_once(pg_app: App, clock: FixedClock) -> None:
    """The second commit of the same mailbox UID is refused by the database, and taken for what
    it is: a duplicate, not a message to quarantine."""
    raw = make_mail(message_id="<raced@client.example>")
    source = SourceRef(mailbox="imap://desk@127.0.0.1/INBOX", uidvalidity=7, uid=1)
    commit, working = threading.Event(), threading.Event()
    first = HeldOpenPipeline(pg_app, commit, working)
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(first.process(raw, source, clock.now()))
    )
    thread.start()
    try:
        assert working.wait(30)  # the first reader has written, not yet committed
        threading.Timer(0.5, commit.set).start()  # commits while the second one waits on it
        second = pg_app.pipeline.process(raw, source, clock.now())
    finally:
        commit.set()
        thread.join(timeout=30)
    assert [r.outcome for r in results] == [Outcome.PROCESSED]
    assert second.outcome is Outcome.DUPLICATE
    assert second.inbound_id == results[0].inbound_id
    assert second.case_id == results[0].case_id
    with pg_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        assert session.scalar(select(func.count()).select_from(QuarantineEntry)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 3
