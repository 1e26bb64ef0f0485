"""The IMAP intake against real servers (pymap, Dovecot): the whole conversation, end to end."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from casework.clock import FixedClock
from casework.models import (
    AuditEvent,
    Case,
    Disposition,
    InboundMessage,
    MailboxCursor,
    OutboxMessage,
    QuarantineEntry,
    QuarantineStatus,
)
from intake.imap import LOGIN_FAILING, LOGIN_RECOVERED, Backoff, ImapIntake
from intake.imap_client import (
    Endpoint,
    ImapCommandError,
    ImapConnection,
    ImapConnectionError,
    ImapLoginError,
    ImapTlsError,
    connect,
)
from intake.imap_cursor import held_from_earlier_uidvalidity
from intake.imap_parse import Parsing
from intake.parse import ParsedMessage
from intake.pipeline import Outcome, Pending, Result, TemporaryFailure
from scheduler.app import App, build_app
from scheduler.config import Settings
from scheduler.imap_intake import check_imap, imap_options
from tests.conftest import SettingsFactory
from tests.desk_helpers import AppPipeline
from tests.imap_servers import PROCESSED, ImapServer, wait_until
from tests.mail import make_mail

QUARANTINE = "Quarantine"


@pytest.fixture
def imap_app(
    imap_settings: Callable[..., Settings],
    imap_server: ImapServer,
    build_apps: Callable[[Settings], App],
) -> Callable[..., App]:
    return lambda **imap: build_apps(imap_settings(imap_server, **imap))


def count(app: App, model: Any, *where: Any) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def inbound_rows(app: App) -> list[InboundMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def mails(n: int, tag: str = "m") -> list[bytes]:
    return [
        make_mail(
            sender=f"student{i}.{tag}@example.com",
            subject=f"Report {tag} {i}: mentor asked for money",
            message_id=f"<{tag}-{i}@client.example>",
        )
        for i in range(n)
    ]


class FailingPipeline(AppPipeline):
    """The real pipeline, with a fault where the casework would be: for poison-message tests."""

    def __init__(self, app: App, marker: str) -> None:
        super().__init__(app)
        self._marker = marker

    def before_handling(self, session: Session, parsed: ParsedMessage) -> None:
        if self._marker in parsed.subject:
            raise RuntimeError("casework blew up on this message")


# --- new mail, batches, move vs flag ---------------------------------------------------------


def test_new_mail_becomes_cases_and_is_moved(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app()
    imap_server.deliver(*mails(3))

    results = app.poll(clock.now())

    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 3
    rows = inbound_rows(app)
    assert [r.disposition for r in rows] == [Disposition.NEW_CASE] * 3
    assert {r.mailbox for r in rows} == {imap_options(app.settings).mailbox_key}
    assert len({r.uidvalidity for r in rows}) == 1
    assert sorted(r.uid for r in rows if r.uid is not None) == [1, 2, 3]
    assert count(app, Case) == 3
    assert count(app, OutboxMessage, OutboxMessage.template == "reporter/acknowledgement") == 3
    assert imap_server.uids("INBOX") == []
    assert imap_server.message_ids(PROCESSED) == sorted(f"<m-{i}@client.example>" for i in range(3))
    with app.sessions() as session:
        cursor = session.scalars(select(MailboxCursor)).one()
    assert cursor.last_uid == 3
    assert cursor.uidvalidity == rows[0].uidvalidity

    assert app.poll(clock.now()) == []
    assert count(app, InboundMessage) == 3


class CommandCounter:
    """Connects as the intake does, and records the UIDs of every FETCH, MOVE and STORE sent."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, int]] = []

    def connect(self, endpoint: Endpoint) -> ImapConnection:
        connection = connect(endpoint)
        client = connection._client
        for name in ("fetch", "move", "add_flags"):
            setattr(client, name, self._recorded(name, getattr(client, name)))
        return connection

    def _recorded(self, name: str, send: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(uids: Sequence[int], *rest: Any, **options: Any) -> Any:
            self.commands.append((name, len(uids)))
            return send(uids, *rest, **options)

        return recorded

    def sizes(self, name: str) -> list[int]:
        return [size for command, size in self.commands if command == name]


def test_batches_cover_every_message_once(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=7)
    imap_server.deliver(*mails(30))
    counter = CommandCounter()
    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=counter.connect
    )

    results = intake.run_pass(clock.now).results
    intake.close()

    assert len(results) == 30
    assert count(app, InboundMessage) == 30
    assert count(app, Case) == 30
    assert imap_server.uids("INBOX") == []
    assert len(imap_server.uids(PROCESSED)) == 30
    # No round trip per message: per batch of 7, one FETCH of sizes, one of the bodies, and
    # one MOVE (or, without MOVE, one COPY and one STORE of \Deleted).
    batches = [7, 7, 7, 7, 2]
    assert counter.sizes("fetch") == [n for n in batches for _ in range(2)]
    moved = counter.sizes("move") or counter.sizes("add_flags")
    assert moved == batches


def test_flag_mode_leaves_mail_in_place_marked_seen(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(after_processing="flag")
    imap_server.deliver(*mails(2))

    assert len(app.poll(clock.now())) == 2
    assert len(imap_server.uids("INBOX")) == 2
    assert all(b"\\Seen" in flags for flags in imap_server.flags("INBOX"))

    imap_server.deliver(*mails(1, tag="later"))
    results = app.poll(clock.now())

    assert [r.outcome for r in results] == [Outcome.PROCESSED]
    assert count(app, InboundMessage) == 3
    assert count(app, Case) == 3


def test_without_move_copy_and_uid_expunge_leave_other_deleted_mail_alone(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app()
    imap_server.deliver(make_mail(message_id="<someone-elses@client.example>"))
    with imap_server.client() as client:
        client.select_folder("INBOX")
        client.add_flags(client.search(), [b"\\Deleted"])  # marked by a person, not expunged
    imap_server.deliver(*mails(3))

    def without_move(endpoint: Endpoint) -> ImapConnection:
        connection = connect(endpoint)
        connection._capabilities = connection.capabilities - {b"MOVE"}
        return connection

    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=without_move
    )
    report = intake.run_pass(clock.now)
    intake.close()

    assert len(report.results) == 3
    assert report.moved == 3
    assert len(imap_server.uids(PROCESSED)) == 3
    if imap_server.kind != "pymap":  # pymap's maildir COPY stores empty copies (a pymap bug)
        expected = sorted(f"<m-{i}@client.example>" for i in range(3))
        assert imap_server.message_ids(PROCESSED) == expected
    with imap_server.client() as client:
        client.select_folder("INBOX", readonly=True)
        left = client.search()
    assert len(left) == 1  # UID EXPUNGE removed only the desk's copies
    assert count(app, InboundMessage) == 3


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 10.0, uniform=lambda low, high: high)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    low = Backoff(1.0, 10.0, uniform=lambda low, high: low)
    assert [low.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]
    jittered = Backoff(2.0, 60.0)
    delays = [jittered.next_delay() for _ in range(4)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, [2.0, 4.0, 8.0, 16.0], strict=True))


def test_messages_are_not_marked_read_before_they_are_handled(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # A poison message with no quarantine folder stays where it is: flagged, still unread,
    # which proves the body was fetched with BODY.PEEK[].
    app = imap_app(after_processing="flag")
    imap_server.deliver(make_mail(subject="POISON pill"))
    poisoned = FailingPipeline(app, "POISON")
    intake = ImapIntake(imap_options(app.settings), poisoned, app.sessions)

    report = intake.run_pass(clock.now)
    intake.close()

    assert [r.outcome for r in report.results] == [Outcome.QUARANTINED]
    [flags] = imap_server.flags("INBOX")
    assert b"\\Seen" not in flags
    assert b"\\Flagged" in flags


# --- IDLE ------------------------------------------------------------------------------------


def test_idle_picks_up_new_mail_within_seconds(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # The poll interval is ten minutes: only an IDLE push can bring the message in quickly.
    app = imap_app(poll_interval="PT10M")
    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions)
    stop = threading.Event()
    thread = threading.Thread(target=intake.serve, args=(clock.now, stop.is_set, stop.wait))
    thread.start()
    try:
        wait_until(lambda: _is_idling(intake), 10)
        delivered = time.monotonic()
        imap_server.deliver(make_mail(message_id="<pushed@client.example>"))
        wait_until(lambda: count(app, InboundMessage) == 1, 10)
        latency = time.monotonic() - delivered
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert latency < 2.5
    assert [r.message_id for r in inbound_rows(app)] == ["<pushed@client.example>"]
    assert imap_server.message_ids(PROCESSED) == ["<pushed@client.example>"]


class DeliveringPipeline(AppPipeline):
    """The real pipeline; while it handles the first message, a second one arrives."""

    def __init__(self, app: App, server: ImapServer) -> None:
        super().__init__(app)
        self._server = server

    def process_group(
        self, items: Sequence[Pending], now: Callable[[], datetime]
    ) -> Iterator[Result]:
        if any(b"<first@client.example>" in item.raw for item in items):
            self._server.deliver(make_mail(message_id="<during@client.example>"))
        return super().process_group(items, now)


def test_mail_arriving_during_a_pass_is_not_left_for_the_poll(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # Ten-minute poll: the message that arrives mid-pass must come in with the next pass.
    app = imap_app(poll_interval="PT10M")
    imap_server.deliver(make_mail(message_id="<first@client.example>"))
    intake = ImapIntake(
        imap_options(app.settings), DeliveringPipeline(app, imap_server), app.sessions
    )
    stop = threading.Event()
    thread = threading.Thread(target=intake.serve, args=(clock.now, stop.is_set, stop.wait))
    thread.start()
    try:
        wait_until(lambda: count(app, InboundMessage) == 2, 10)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert sorted(str(r.message_id) for r in inbound_rows(app)) == [
        "<during@client.example>",
        "<first@client.example>",
    ]


def test_without_idle_new_mail_is_picked_up_by_polling(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(idle=False, poll_interval="PT1S")
    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions)
    stop = threading.Event()
    thread = threading.Thread(target=intake.serve, args=(clock.now, stop.is_set, stop.wait))
    thread.start()
    try:
        wait_until(lambda: intake._connection is not None, 10)
        imap_server.deliver(make_mail(message_id="<polled@client.example>"))
        # A poll a second: 30 s is room for a loaded machine, not the latency asked for.
        wait_until(
            lambda: count(app, InboundMessage) == 1,
            30,
            lambda: {
                "inbox": imap_server.message_ids("INBOX"),
                "quarantined": count(app, QuarantineEntry),
                "thread alive": thread.is_alive(),
                "connected": intake._connection is not None,
            },
        )
        assert not _is_idling(intake)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert imap_server.message_ids(PROCESSED) == ["<polled@client.example>"]


def test_idle_is_reissued_and_still_delivers(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # IDLE renewed every 0.3 s (in production: 25 minutes, inside RFC 2177's 29).
    app = imap_app(poll_interval="PT10M")
    options = replace(imap_options(app.settings), idle_renew_seconds=0.3)
    intake = ImapIntake(options, app.pipeline, app.sessions)
    passes: list[int] = []
    run_pass = intake.run_pass

    def counting(*args: Any, **kwargs: Any) -> Any:
        passes.append(1)
        return run_pass(*args, **kwargs)

    intake.run_pass = counting  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=intake.serve, args=(clock.now, stop.is_set, stop.wait))
    thread.start()
    try:
        wait_until(lambda: len(passes) >= 4, 10)
        imap_server.deliver(make_mail(message_id="<after-renewals@client.example>"))
        wait_until(lambda: count(app, InboundMessage) == 1, 10)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def _is_idling(intake: ImapIntake) -> bool:
    connection = intake._connection
    return connection is not None and connection._idling


# --- failures --------------------------------------------------------------------------------


class Serving:
    """`serve()` in a thread whose waits are recorded and cut short: time is the test's."""

    def __init__(
        self,
        intake: ImapIntake,
        clock: FixedClock,
        poll_seconds: float,
        after_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.waits: list[float] = []
        self._poll = poll_seconds
        self._after_failure = after_failure
        self._stop = threading.Event()
        backoff = Backoff(1.0, 8.0, uniform=lambda low, high: high)
        self._thread = threading.Thread(
            target=intake.serve,
            args=(clock.now, self._stop.is_set, self._wait),
            kwargs={"backoff": backoff},
        )

    def _wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if seconds != self._poll:  # a backoff: whatever failed may come back meanwhile
            self._after_failure()
        return self._stop.wait(0.02)

    @property
    def backoffs(self) -> list[float]:
        """The delays waited after a failure (every other wait is the poll interval)."""
        return [w for w in self.waits if w != self._poll]

    def __enter__(self) -> Serving:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def test_serving_reconnects_after_the_server_goes_away(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(idle=False)
    imap_server.deliver(*mails(2))
    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions)
    with Serving(intake, clock, poll_seconds=30) as serving:
        wait_until(lambda: count(app, InboundMessage) == 2, 10)
        wait_until(lambda: imap_server.uids("INBOX") == [], 10)  # and moved
        imap_server.stop()
        wait_until(lambda: len(serving.backoffs) >= 3, 10)  # 1 s, 2 s, 4 s ... while it is down
        imap_server.start()
        imap_server.deliver(*mails(1, tag="after"))
        wait_until(lambda: count(app, InboundMessage) == 3, 15)
    assert serving.backoffs[:3] == [1.0, 2.0, 4.0]
    wait_until(lambda: len(imap_server.uids(PROCESSED)) == 3, 10)
    assert count(app, Case) == 3


def test_serving_waits_out_refused_logins_and_records_the_recovery(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(idle=False, login_alert_after=2)
    imap_server.deliver(*mails(1))
    refusals = 3

    def connector(endpoint: Endpoint) -> ImapConnection:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return connect(replace(endpoint, password="not the password"))
        return connect(endpoint)

    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions, connector=connector)
    with Serving(intake, clock, poll_seconds=30) as serving:
        wait_until(lambda: count(app, InboundMessage) == 1, 15)
    assert serving.backoffs[:3] == [1.0, 2.0, 4.0]
    with app.sessions() as session:
        kinds = list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))
    assert kinds.count(LOGIN_FAILING) == 1  # said once, at the second refusal in a row
    assert LOGIN_RECOVERED in kinds
    assert intake.login_failures == 0


def test_serving_waits_out_a_database_outage_and_loses_nothing(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(idle=False)
    imap_server.deliver(*mails(4))
    outage = OutagePipeline(app, at=2)
    intake = ImapIntake(imap_options(app.settings), outage, app.sessions)
    with Serving(intake, clock, poll_seconds=30, after_failure=outage.end) as serving:
        wait_until(lambda: count(app, InboundMessage) == 4, 15)
        wait_until(lambda: imap_server.uids("INBOX") == [], 10)
    assert serving.backoffs[:1] == [1.0]
    assert count(app, InboundMessage) == 4
    assert count(app, Case) == 4
    assert len(imap_server.uids(PROCESSED)) == 4


def test_serving_starts_the_parse_helper_before_it_first_connects(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(idle=False)
    imap_server.deliver(*mails(20))  # 16 or more in a batch are parsed ahead, in the helper
    before = {child.pid for child in multiprocessing.active_children()}
    at_connect: list[set[int | None]] = []

    def connector(endpoint: Endpoint) -> ImapConnection:
        at_connect.append({child.pid for child in multiprocessing.active_children()} - before)
        return connect(endpoint)

    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions, connector=connector)
    with Serving(intake, clock, poll_seconds=30):
        wait_until(lambda: count(app, InboundMessage) == 20, 30)
        helpers = {child.pid for child in multiprocessing.active_children()} - before
    assert len(at_connect[0]) == 1  # started before the first connection was asked for
    assert helpers == at_connect[0]  # and the same helper parsed the batch
    assert count(app, Case) == 20
    assert imap_server.uids("INBOX") == []


class BrokenOnce:
    """Connects as the intake does; the first connection's SELECT fails with a bug."""

    def __init__(self) -> None:
        self.broken = False

    def connect(self, endpoint: Endpoint) -> ImapConnection:
        connection = connect(endpoint)
        if not self.broken:
            self.broken = True

            def select(*_args: Any, **_kwargs: Any) -> Any:
                raise ValueError("a bug in the intake")

            connection.select = select  # type: ignore[method-assign]
        return connection


def test_serving_outlives_a_bug_in_one_pass(
    imap_server: ImapServer,
    imap_app: Callable[..., App],
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = imap_app(idle=False)
    imap_server.deliver(*mails(2))
    broken = BrokenOnce()
    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=broken.connect
    )
    with Serving(intake, clock, poll_seconds=30) as serving:
        wait_until(lambda: count(app, InboundMessage) == 2, 15)
    assert serving.backoffs[:1] == [1.0]
    assert "IMAP intake pass failed" in caplog.text and "a bug in the intake" in caplog.text
    assert imap_server.uids("INBOX") == []


class RestartingBeforeMove:
    """Connects as the intake does; the server restarts just before the `at`-th MOVE is sent,
    after that batch committed, so the MOVE meets a dropped connection."""

    def __init__(self, server: ImapServer, at: int) -> None:
        self._server = server
        self._at = at
        self.moves = 0

    def connect(self, endpoint: Endpoint) -> ImapConnection:
        connection = connect(endpoint)
        move = connection.move

        def restarting_move(uids: Sequence[int], folder: str) -> None:
            self.moves += 1
            if self.moves == self._at:
                self._server.restart()
            move(uids, folder)

        connection.move = restarting_move  # type: ignore[method-assign]
        return connection


def test_server_restart_mid_batch_loses_and_duplicates_nothing(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=4)
    imap_server.deliver(*mails(12))
    restarting = RestartingBeforeMove(imap_server, at=2)
    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=restarting.connect
    )

    with pytest.raises(ImapConnectionError):
        intake.run_pass(clock.now)
    # The first batch was moved. The server went away after the second batch committed, before
    # its MOVE; the third, read while the second was processed, was committed too, and not
    # moved: the batch before it was not.
    assert count(app, InboundMessage) == 12
    assert count(app, Case) == 12
    assert len(imap_server.uids(PROCESSED)) == 4
    assert len(imap_server.uids("INBOX")) == 8

    report = intake.run_pass(clock.now)
    intake.close()

    assert report.skipped_known == 8  # committed before, moved only now
    assert report.results == []
    rows = inbound_rows(app)
    assert len(rows) == 12
    assert len({r.message_id for r in rows}) == 12
    assert count(app, Case) == 12
    assert imap_server.uids("INBOX") == []
    assert imap_server.message_ids(PROCESSED) == sorted(
        f"<m-{i}@client.example>" for i in range(12)
    )


class Watched:
    """Connects as the intake does and notes, from any thread, each FETCH of bodies and each
    MOVE; with `failing_moves`, that many MOVEs fail as a dropped connection would."""

    def __init__(self, failing_moves: int = 0) -> None:
        self.fetched: list[list[int]] = []
        self.moved: list[list[int]] = []
        self.second_fetch = threading.Event()
        self.first_move = threading.Event()
        self._failing_moves = failing_moves

    def connect(self, endpoint: Endpoint) -> ImapConnection:
        connection = connect(endpoint)
        bodies, move = connection.bodies, connection.move

        def fetch(uids: Sequence[int]) -> dict[int, bytes]:
            self.fetched.append(list(uids))
            if len(self.fetched) == 2:
                self.second_fetch.set()
            return bodies(uids)

        def move_to(uids: Sequence[int], folder: str) -> None:
            self.moved.append(list(uids))
            self.first_move.set()
            if self._failing_moves:
                self._failing_moves -= 1
                raise ImapConnectionError("connection reset by peer")
            move(uids, folder)

        connection.bodies = fetch  # type: ignore[method-assign]
        connection.move = move_to  # type: ignore[method-assign]
        return connection


class WaitingPipeline(AppPipeline):
    """The real pipeline; each group waits (at most 20 s) for its event before it is run, and
    notes whether it came."""

    def __init__(self, app: App, events: list[threading.Event]) -> None:
        super().__init__(app)
        self._events = events
        self.came: list[bool] = []

    def process_group(
        self, items: Sequence[Pending], now: Callable[[], datetime]
    ) -> Iterator[Result]:
        if len(self.came) < len(self._events):
            self.came.append(self._events[len(self.came)].wait(20))
        return super().process_group(items, now)


def test_the_next_batch_is_read_and_the_last_moved_while_a_batch_is_processed(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=4)
    imap_server.deliver(*mails(12))
    watched = Watched()
    # The first batch's group waits for the second batch to be fetched, the second's for the
    # first batch to be moved: done one after the other, each would wait in vain.
    pipeline = WaitingPipeline(app, [watched.second_fetch, watched.first_move])
    intake = ImapIntake(
        imap_options(app.settings), pipeline, app.sessions, connector=watched.connect
    )
    report = intake.run_pass(clock.now)
    intake.close()

    assert pipeline.came == [True, True]
    assert len(report.results) == 12 and report.moved == 12
    assert [len(uids) for uids in watched.fetched] == [4, 4, 4]
    assert watched.moved == watched.fetched  # each batch moved whole, in order
    assert count(app, Case) == 12
    assert imap_server.uids("INBOX") == []
    with app.sessions() as session:
        cursor = session.scalars(select(MailboxCursor)).one()
    assert cursor.last_uid == watched.fetched[-1][-1]


def test_a_batch_is_not_moved_nor_the_cursor_advanced_after_the_batch_before_failed_to_move(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=4)
    imap_server.deliver(*mails(8))
    watched = Watched(failing_moves=1)
    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=watched.connect
    )
    with pytest.raises(ImapConnectionError):
        intake.run_pass(clock.now)

    # The second batch, read while the first was processed, was committed; the first batch's
    # MOVE failed, so the second's was never tried and the cursor stayed where it was.
    assert count(app, InboundMessage) == 8
    assert len(watched.moved) == 1
    assert len(imap_server.uids("INBOX")) == 8
    assert count(app, MailboxCursor) == 0

    report = intake.run_pass(clock.now)
    intake.close()

    assert report.skipped_known == 8 and report.results == [] and report.moved == 8
    assert count(app, Case) == 8
    assert imap_server.uids("INBOX") == []
    assert len(imap_server.uids(PROCESSED)) == 8


class OutagePipeline(AppPipeline):
    """The real pipeline; the database goes away when the `at`-th message is handled, and
    refuses every statement after that until `end()`."""

    def __init__(self, app: App, at: int) -> None:
        super().__init__(app)
        self._at = at
        self.seen = 0
        self.ended = False

    def end(self) -> None:
        self.ended = True

    def before_handling(self, session: Session, parsed: ParsedMessage) -> None:
        self.seen += 1
        if self.seen >= self._at and not self.ended:
            refused = ConnectionRefusedError("connection refused")
            raise OperationalError("SELECT inbound_messages.id", {}, refused)


@pytest.mark.parametrize(("per_commit", "committed"), [(1, 3), (2, 2), (25, 0)])
def test_database_outage_moves_only_what_was_committed(
    imap_server: ImapServer,
    imap_app: Callable[..., App],
    clock: FixedClock,
    per_commit: int,
    committed: int,
) -> None:
    app = imap_app(batch_size=10, messages_per_commit=per_commit)
    imap_server.deliver(*mails(6))
    outage = OutagePipeline(app, at=4)
    intake = ImapIntake(imap_options(app.settings), outage, app.sessions)

    with pytest.raises(TemporaryFailure):
        intake.run_pass(clock.now)

    # One commit per message keeps the first three; groups of two keep the first group only;
    # one group of all six keeps nothing. Whatever was kept was moved, and nothing else.
    assert count(app, InboundMessage) == committed
    assert count(app, Case) == committed
    assert count(app, QuarantineEntry) == 0
    assert imap_server.message_ids(PROCESSED) == [
        f"<m-{i}@client.example>" for i in range(committed)
    ]
    assert len(imap_server.uids("INBOX")) == 6 - committed
    with app.sessions() as session:
        assert list(session.scalars(select(MailboxCursor.last_uid))) == (
            [committed] if committed else []
        )

    outage.end()
    report = intake.run_pass(clock.now)
    intake.close()

    assert len(report.results) == 6 - committed
    assert count(app, InboundMessage) == 6
    assert count(app, Case) == 6
    assert imap_server.uids("INBOX") == []


def test_a_stop_leaves_the_uncommitted_group_on_the_server_and_the_cursor_before_it(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=10, messages_per_commit=4)
    imap_server.deliver(*mails(10))
    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions)
    asked: list[int] = []

    def stop_at_the_seventh() -> bool:
        asked.append(1)
        return len(asked) >= 7

    report = intake.run_pass(clock.now, stop_at_the_seventh)

    # Messages 1-4 were one group, committed and moved; 5 and 6 were waiting for their group's
    # commit when the stop came, and are left for the next pass.
    assert len(report.results) == 4
    assert [r.message_id for r in inbound_rows(app)] == [
        f"<m-{i}@client.example>" for i in range(4)
    ]
    assert imap_server.message_ids(PROCESSED) == [f"<m-{i}@client.example>" for i in range(4)]
    assert len(imap_server.uids("INBOX")) == 6
    with app.sessions() as session:
        assert session.scalars(select(MailboxCursor.last_uid)).one() == 4

    again = intake.run_pass(clock.now)
    intake.close()
    assert len(again.results) == 6
    assert len({r.message_id for r in inbound_rows(app)}) == count(app, Case) == 10
    assert imap_server.uids("INBOX") == []


class ParsedNoting(WaitingPipeline):
    """A WaitingPipeline that notes, for each group, whether the parse helper read every
    message of it."""

    def __init__(self, app: App, events: list[threading.Event]) -> None:
        super().__init__(app, events)
        self.parsed_ahead: list[bool] = []

    def process_group(
        self, items: Sequence[Pending], now: Callable[[], datetime]
    ) -> Iterator[Result]:
        self.parsed_ahead.append(all(item.parsed is not None for item in items))
        return super().process_group(items, now)


def test_the_batch_read_ahead_goes_to_the_parse_helper_while_a_batch_is_processed(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=16, parse_workers=1)
    imap_server.deliver(*mails(32))
    second = threading.Event()
    # The first batch's group waits until the second batch is handed to the helper: handed
    # over only when it is processed, the group would wait in vain.
    pipeline = ParsedNoting(app, [second])
    intake = ImapIntake(imap_options(app.settings), pipeline, app.sessions)
    submitted: list[int] = []
    submit = intake._parser.submit

    def noting(raws: Sequence[bytes]) -> Parsing:
        parsing = submit(raws)
        submitted.append(len(raws))
        if len(submitted) == 2:
            second.set()
        return parsing

    intake._parser.submit = noting  # type: ignore[method-assign]
    try:
        report = intake.run_pass(clock.now)
    finally:
        intake.close()

    assert pipeline.came == [True]
    assert submitted == [16, 16]
    assert pipeline.parsed_ahead == [True, True]  # both batches read by the helper
    assert len(report.results) == 32 and report.moved == 32
    assert count(app, Case) == 32


def test_a_stop_between_batches_leaves_the_batch_read_ahead_unread(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(batch_size=4)
    imap_server.deliver(*mails(8))
    watched = Watched()
    intake = ImapIntake(
        imap_options(app.settings), app.pipeline, app.sessions, connector=watched.connect
    )

    # Asked before the first batch, before each of its four messages, then before the second.
    asked: list[int] = []

    def stop_before_the_second_batch() -> bool:
        asked.append(1)
        return len(asked) >= 6

    report = intake.run_pass(clock.now, stop_before_the_second_batch)

    assert len(report.results) == 4 and report.moved == 4
    assert watched.fetched[0] == watched.moved[0]  # the first batch, moved
    assert len(imap_server.uids("INBOX")) == 4
    assert all(b"\\Seen" not in flags for flags in imap_server.flags("INBOX"))
    with app.sessions() as session:
        assert session.scalars(select(MailboxCursor.last_uid)).one() == watched.moved[0][-1]

    again = intake.run_pass(clock.now)
    intake.close()
    assert len(again.results) == 4
    assert count(app, Case) == 8
    assert imap_server.uids("INBOX") == []


def test_uidvalidity_change_rescans_without_processing_twice(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(folder="Desk", after_processing="flag")
    with imap_server.client() as client:
        client.create_folder("Desk")
    imap_server.deliver(*mails(3), folder="Desk")
    assert len(app.poll(clock.now())) == 3
    with app.sessions() as session:
        before = session.scalars(select(MailboxCursor)).one().uidvalidity

    # The folder is recreated (as a server migration would): same mail, new UIDVALIDITY.
    with imap_server.client() as client:
        client.delete_folder("Desk")
        client.create_folder("Desk")
    imap_server.deliver(*mails(3), *mails(1, tag="new"), folder="Desk")

    results = app.poll(clock.now())

    assert sorted(r.outcome for r in results) == sorted(
        [Outcome.DUPLICATE] * 3 + [Outcome.PROCESSED]
    )
    with app.sessions() as session:
        after = session.scalars(select(MailboxCursor)).one()
    assert after.uidvalidity != before
    assert after.last_uid == 4
    assert count(app, Case) == 4
    assert count(app, InboundMessage, InboundMessage.disposition != Disposition.DUPLICATE) == 4
    # The rescan recorded the new UIDs, so a crash now would not even re-read them.
    assert count(app, InboundMessage, InboundMessage.uidvalidity == after.uidvalidity) == 4


def test_a_report_sent_twice_in_one_batch_opens_one_case(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    """A group reads ahead whether each message was seen before; a copy of a message earlier in
    the same group must still be found, by Message-ID, or by its bytes when it has none."""
    app = imap_app()
    resent = make_mail(sender="priya@example.com", message_id="<twice@client.example>")
    bare = b"".join(
        line
        for line in make_mail(sender="ravi@example.com", subject="No id").splitlines(True)
        if not line.startswith(b"Message-ID:")
    )
    batch = mails(20)
    batch[5:5] = [resent, bare]
    batch[15:15] = [resent, bare]  # 24 messages: one group, parsed ahead in the helper
    imap_server.deliver(*batch)

    results = app.poll(clock.now())

    by_sender = [
        (row.from_address, result)
        for row, result in zip(inbound_rows(app), results, strict=True)
        if row.from_address in ("priya@example.com", "ravi@example.com")
    ]
    assert [(sender, r.outcome) for sender, r in by_sender] == [
        ("priya@example.com", Outcome.PROCESSED),
        ("ravi@example.com", Outcome.PROCESSED),
        ("priya@example.com", Outcome.DUPLICATE),
        ("ravi@example.com", Outcome.DUPLICATE),
    ]
    assert by_sender[2][1].case_id == by_sender[0][1].case_id is not None
    assert by_sender[3][1].case_id == by_sender[1][1].case_id is not None
    assert count(app, Case) == 22
    assert count(app, InboundMessage, InboundMessage.disposition == Disposition.DUPLICATE) == 2
    assert imap_server.uids("INBOX") == []


def test_poison_message_is_quarantined_and_does_not_block_the_rest(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(quarantine_folder=QUARANTINE)
    poison = make_mail(subject="POISON: breaks the casework", message_id="<poison@client.example>")
    imap_server.deliver(*mails(2), poison, *mails(2, tag="after"))
    poisoned = FailingPipeline(app, "POISON")
    intake = ImapIntake(imap_options(app.settings), poisoned, app.sessions)

    report = intake.run_pass(clock.now)

    assert [r.outcome for r in report.results] == [
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    with app.sessions() as session:
        entry = session.scalars(select(QuarantineEntry)).one()
    assert entry.raw == poison or entry.raw.replace(b"\r\n", b"\n") == poison.replace(
        b"\r\n", b"\n"
    )
    assert "casework blew up" in entry.reason
    assert imap_server.message_ids(QUARANTINE) == ["<poison@client.example>"]
    assert len(imap_server.uids(PROCESSED)) == 4
    assert imap_server.uids("INBOX") == []

    intake.close()


def test_a_quarantined_uid_read_again_is_not_quarantined_twice(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(after_processing="flag")
    imap_server.deliver(make_mail(subject="POISON"), *mails(1))
    poisoned = FailingPipeline(app, "POISON")
    intake = ImapIntake(imap_options(app.settings), poisoned, app.sessions)
    assert len(intake.run_pass(clock.now).results) == 2
    # As if the worker died before the cursor was written: both UIDs are read again.
    with app.sessions() as session, session.begin():
        session.query(MailboxCursor).delete()

    report = intake.run_pass(clock.now)
    intake.close()

    assert report.results == []
    assert report.skipped_known == 2
    assert count(app, QuarantineEntry) == 1
    assert count(app, InboundMessage) == 1


def test_a_message_quarantined_in_place_is_not_quarantined_again_under_a_new_uidvalidity(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # Flag mode without a quarantine folder: the poison message stays in the folder.
    app = imap_app(folder="Desk", after_processing="flag")
    poison = make_mail(subject="POISON", message_id="<poison@client.example>")
    with imap_server.client() as client:
        client.create_folder("Desk")
    imap_server.deliver(poison, *mails(1), folder="Desk")
    poisoned = FailingPipeline(app, "POISON")
    intake = ImapIntake(imap_options(app.settings), poisoned, app.sessions)
    assert [r.outcome for r in intake.run_pass(clock.now).results] == [
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
    ]

    # The folder is recreated with the same mail (a server migration), plus a second copy of
    # the poison bytes: that one is a message of its own and fails on its own.
    with imap_server.client() as client:
        client.delete_folder("Desk")
        client.create_folder("Desk")
    imap_server.deliver(poison, *mails(1), poison, folder="Desk")
    report = intake.run_pass(clock.now)
    intake.close()

    assert [r.outcome for r in report.results] == [Outcome.DUPLICATE, Outcome.QUARANTINED]
    assert report.skipped_known == 1
    with app.sessions() as session:
        cursor = session.scalars(select(MailboxCursor)).one()
        sources = sorted(session.scalars(select(QuarantineEntry.source)))
    key = imap_options(app.settings).mailbox_key
    assert sources == [
        f"{key} uidvalidity={cursor.uidvalidity} uid=1",
        f"{key} uidvalidity={cursor.uidvalidity} uid=3",
    ]
    assert count(app, Case) == 1
    assert [b"\\Flagged" in flags for flags in imap_server.flags("Desk")] == [True, False, True]

    # Read again from the start (a lost cursor): nothing is quarantined or processed anew.
    with app.sessions() as session, session.begin():
        session.query(MailboxCursor).delete()
    again = ImapIntake(imap_options(app.settings), poisoned, app.sessions)
    assert again.run_pass(clock.now).results == []
    again.close()
    assert count(app, QuarantineEntry) == 2


def test_content_is_looked_at_only_when_an_earlier_uidvalidity_left_quarantine_held(
    sqlite_app: App, clock: FixedClock
) -> None:
    folder = "imap://desk_1@host/IN%BOX"  # LIKE wildcards in the name match only themselves

    def held(*sources: str, status: QuarantineStatus = QuarantineStatus.HELD) -> bool:
        with sqlite_app.sessions.begin() as session:
            session.query(QuarantineEntry).delete()
            for source in sources:
                session.add(
                    QuarantineEntry(
                        received_at=clock.now(), source=source, sha256="0" * 64, raw=b"",
                        reason="test", status=status,
                    )
                )  # fmt: skip
        with sqlite_app.sessions() as session:
            return held_from_earlier_uidvalidity(session, folder, 7)

    assert held() is False
    assert held(f"{folder} uidvalidity=7 uid=1") is False  # this UIDVALIDITY: found by label
    assert held("imap://desk11@host/INXBOX uidvalidity=6 uid=1") is False  # another folder
    assert held(f"{folder} uidvalidity=6 uid=1", status=QuarantineStatus.REPLAYED) is False
    assert held(f"{folder} uidvalidity=6 uid=1", f"{folder} uidvalidity=7 uid=2") is True


def test_oversized_message_keeps_headers_and_start_and_is_acknowledged(
    imap_server: ImapServer,
    imap_settings: Callable[..., Settings],
    clock: FixedClock,
) -> None:
    settings = imap_settings(imap_server)
    settings = replace(settings, intake=replace(settings.intake, max_message_bytes=4000))
    app = build_app(settings, migrate=True)
    body = "My mentor asked me to pay him privately. " + "evidence line " * 2000
    imap_server.deliver(make_mail(body=body, message_id="<big@client.example>"))

    [result] = app.poll(clock.now())

    assert result.outcome is Outcome.PROCESSED
    [row] = inbound_rows(app)
    assert row.truncated
    assert row.size > 4000
    assert row.message_id == "<big@client.example>"
    assert row.body_text.startswith("My mentor asked me to pay him privately.")
    assert count(app, OutboxMessage, OutboxMessage.template == "reporter/acknowledgement") == 1
    assert imap_server.uids("INBOX") == []
    app.engine.dispose()


# --- connecting ------------------------------------------------------------------------------


def test_starttls_never_falls_back_to_plain_text(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    # Neither test server has a certificate: STARTTLS must fail, and no login may happen.
    app = imap_app(tls="starttls")
    imap_server.deliver(*mails(1))

    with pytest.raises(ImapTlsError):
        app.poll(clock.now())

    assert count(app, InboundMessage) == 0
    assert len(imap_server.uids("INBOX")) == 1
    ok, detail = check_imap(app.settings)
    assert not ok
    assert "TLS" in detail


def test_starttls_with_a_trusted_certificate_reads_mail(
    tls_imap_server: ImapServer, imap_settings: Callable[..., Settings], clock: FixedClock
) -> None:
    server = tls_imap_server
    app = build_app(
        imap_settings(server, tls="starttls", ca_file=str(server.certificate)), migrate=True
    )
    server.deliver(*mails(2))

    assert [r.outcome for r in app.poll(clock.now())] == [Outcome.PROCESSED] * 2

    assert count(app, Case) == 2
    assert server.uids("INBOX") == []
    ok, detail = check_imap(app.settings, app.sessions)
    assert ok, detail
    app.engine.dispose()


def test_check_warns_that_a_first_run_reads_the_whole_folder(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app()
    imap_server.deliver(*mails(3, "old"))

    ok, detail = check_imap(app.settings, app.sessions)
    assert ok, detail
    assert "the first run handles all 3 messages in INBOX" in detail

    app.poll(clock.now())
    imap_server.deliver(*mails(1, "new"))
    ok, detail = check_imap(app.settings, app.sessions)
    assert ok, detail
    assert "first run" not in detail
    assert "INBOX has 1 messages" in detail


def test_starttls_with_an_untrusted_certificate_is_refused(
    tls_imap_server: ImapServer, imap_settings: Callable[..., Settings], clock: FixedClock
) -> None:
    server = tls_imap_server
    app = build_app(imap_settings(server, tls="starttls"), migrate=True)  # system CAs only
    server.deliver(*mails(1))

    with pytest.raises(ImapTlsError, match="certificate verify failed"):
        app.poll(clock.now())

    assert count(app, InboundMessage) == 0
    assert len(server.uids("INBOX")) == 1
    app.engine.dispose()


def test_implicit_tls_to_a_plain_text_server_is_a_tls_error(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(tls="ssl")
    imap_server.deliver(*mails(1))

    with pytest.raises(ImapTlsError):
        app.poll(clock.now())

    assert count(app, InboundMessage) == 0
    assert len(imap_server.uids("INBOX")) == 1


def test_repeated_login_failures_show_up_in_check(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(login_alert_after=2)
    good_ok, good_detail = check_imap(app.settings, app.sessions)
    assert good_ok, good_detail
    assert "login accepted" in good_detail

    # The account's password is changed under the worker; later the operator fixes it.
    password = ["wrong password"]

    def connector(endpoint: Endpoint) -> ImapConnection:
        return connect(replace(endpoint, password=password[0]))

    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions, connector=connector)
    for _ in range(2):
        with pytest.raises(ImapLoginError):
            intake.run_pass(clock.now)
    assert count(app, AuditEvent, AuditEvent.kind == LOGIN_FAILING) == 1

    bad_ok, bad_detail = check_imap(_app_with_password(app, "wrong password").settings)
    assert not bad_ok
    assert "login refused" in bad_detail
    # With the right password `check` logs in, but still shows what the worker went through.
    ok, detail = check_imap(app.settings, app.sessions)
    assert not ok
    assert "the worker reported 2 refused logins in a row" in detail

    password[0] = imap_server.password
    intake.run_pass(clock.now)
    intake.close()
    assert count(app, AuditEvent, AuditEvent.kind == LOGIN_RECOVERED) == 1
    ok, detail = check_imap(app.settings, app.sessions)
    assert ok, detail


def _app_with_password(app: App, password: str) -> App:
    imap = replace(app.settings.intake.imap, password=password)
    settings = replace(app.settings, intake=replace(app.settings.intake, imap=imap))
    return replace(app, settings=settings)


def test_unreachable_server_is_a_connection_error(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app()
    imap_server.stop()
    with pytest.raises(ImapConnectionError):
        app.poll(clock.now())
    ok, detail = check_imap(app.settings)
    assert not ok
    assert "Connection" in detail or "refused" in detail


def test_config_refuses_moving_mail_into_the_folder_it_reads(
    make_settings: SettingsFactory, sqlite_url: str
) -> None:
    from scheduler.config import ConfigError

    imap = {"username": "desk", "password_env": "HOME", "processed_folder": "INBOX"}
    with pytest.raises(ConfigError, match="processed_folder: must not be the folder"):
        make_settings(sqlite_url, intake={"source": "imap", "imap": imap})
    imap = {"username": "desk", "password_env": "HOME", "quarantine_folder": "INBOX"}
    with pytest.raises(ConfigError, match="quarantine_folder: must not be the folder"):
        make_settings(sqlite_url, intake={"source": "imap", "imap": imap})
    # tls = "none" stays refused for anything but loopback.
    imap = {"username": "desk", "password_env": "HOME", "host": "imap.example.org", "tls": "none"}
    with pytest.raises(ConfigError, match="loopback"):
        make_settings(sqlite_url, intake={"source": "imap", "imap": imap})


def test_whole_bodies_are_fetched_in_groups_of_bounded_size() -> None:
    from intake.imap import _by_total_size

    sizes = {1: 40, 2: 40, 3: 40, 4: 200, 5: 10}
    assert list(_by_total_size([1, 2, 3, 4, 5], sizes, 100)) == [[1, 2], [3], [4], [5]]
    assert list(_by_total_size([], sizes, 100)) == []


def test_a_message_the_server_will_not_hand_over_blocks_none_behind_it(
    imap_server: ImapServer, imap_app: Callable[..., App], clock: FixedClock
) -> None:
    app = imap_app(quarantine_folder=QUARANTINE)
    imap_server.deliver(*mails(4))
    unreadable = imap_server.uids("INBOX")[1]

    def refusing(endpoint: Endpoint) -> ImapConnection:
        # The server says NO to any FETCH of one message (a damaged file on its disk).
        connection = connect(endpoint)
        bodies = connection.bodies

        def refuse(uids: Sequence[int]) -> dict[int, bytes]:
            if unreadable in uids:
                raise ImapCommandError("UID FETCH BODY.PEEK[]: NO [SERVERBUG] Internal error")
            return bodies(uids)

        connection.bodies = refuse  # type: ignore[method-assign]
        return connection

    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions, connector=refusing)
    report = intake.run_pass(clock.now)
    again = intake.run_pass(clock.now)
    intake.close()

    assert [r.outcome for r in report.results] == [
        Outcome.PROCESSED,
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    assert again.results == []  # recognised, not quarantined twice
    assert count(app, InboundMessage) == 3
    with app.sessions() as session:
        entry = session.scalars(select(QuarantineEntry)).one()
    assert entry.reason.startswith("the server did not return the message")
    assert "SERVERBUG" in entry.reason
    assert f"uid={unreadable}" in entry.source
    # Nothing is lost: the message itself waits in the quarantine folder on the server.
    assert len(imap_server.uids(QUARANTINE)) == 1
    assert imap_server.uids("INBOX") == []
