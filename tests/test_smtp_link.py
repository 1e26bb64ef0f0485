"""SMTP delivery runs over one reused connection, and OAuth 2.0 logins to a real aiosmtpd."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from casework.clock import FixedClock
from casework.credentials import LoginMethod, Tls, TokenCommand
from casework.models import OutboxMessage, OutboxStatus
from intake.pipeline import SourceRef
from outbound.delivery import DeliveryResult, SendError
from outbound.smtp import SmtpTransport
from scheduler.app import App, build_app
from scheduler.check import check_smtp
from tests.conftest import MODERATORS, SettingsFactory
from tests.mail import make_mail
from tests.smtp_server import (
    ScriptedHandler,
    bearer_smtp_server,
    free_port,
    serving,
    smtp_server,
)

PRINT_FILE = "import sys; sys.stdout.write(open(sys.argv[1]).read())"


def smtp_app(make_settings: SettingsFactory, url: str, **smtp: Any) -> App:
    settings = make_settings(
        url,
        outbound={
            "transport": "smtp",
            "max_attempts": 3,
            "smtp": {"host": "127.0.0.1", "tls": "none", "timeout": "PT2S", **smtp},
        },
        moderators={"addresses": MODERATORS[:1]},
    )
    return build_app(settings, migrate=True)


def reports(app: App, clock: FixedClock, count: int, tag: str = "r") -> None:
    """`count` new reports: each queues an acknowledgement and one moderator email."""
    for index in range(count):
        app.pipeline.process(
            make_mail(sender=f"{tag}{index}@example.com", message_id=f"<{tag}{index}@example.com>"),
            SourceRef(label="t"),
            clock.now(),
        )


def rows(app: App) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_one_connection_carries_a_whole_delivery_run(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    with smtp_server() as (server, port):
        app = smtp_app(make_settings, sqlite_url, port=port)
        reports(app, clock, 4)

        assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 8

        assert len(server.received) == 8
        assert len(set(server.peers)) == 1
        assert all(r.status is OutboxStatus.SENT for r in rows(app))
        app.engine.dispose()


def test_a_refused_message_is_reset_and_the_connection_carries_on(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    with smtp_server(["550 5.1.1 no such user", "451 4.3.0 try later"]) as (server, port):
        app = smtp_app(make_settings, sqlite_url, port=port)
        reports(app, clock, 3)

        counts = app.deliverer.flush(clock.now())

        assert counts == {DeliveryResult.SENT: 4, DeliveryResult.RETRY: 1, DeliveryResult.DEAD: 1}
        assert [r.status for r in rows(app)][:2] == [OutboxStatus.DEAD, OutboxStatus.PENDING]
        assert len(server.received) == 4
        assert len(set(server.peers)) == 1
        app.engine.dispose()


@dataclass
class RefusesOneRecipient(ScriptedHandler):
    """Refuses RCPT TO for one address, leaving the transaction open as real servers do."""

    refused: str = ""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address == self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_recipient_refused_mid_transaction_is_reset_before_the_next_message(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    # Without RSET the next MAIL FROM would meet the open transaction ("503 nested MAIL").
    server = RefusesOneRecipient(refused="r0@example.com")
    with serving(server) as controller:
        app = smtp_app(make_settings, sqlite_url, port=controller.port)
        reports(app, clock, 3)

        counts = app.deliverer.flush(clock.now())

        assert counts == {DeliveryResult.SENT: 5, DeliveryResult.RETRY: 0, DeliveryResult.DEAD: 1}
        dead = [r for r in rows(app) if r.status is OutboxStatus.DEAD]
        assert [(r.recipient, r.last_error) for r in dead] == [
            ("r0@example.com", "550 5.1.1 no such user")
        ]
        assert len(server.received) == 5
        assert len(set(server.peers)) == 1
        app.engine.dispose()


def test_a_connection_the_server_closed_is_reopened_and_nothing_is_lost() -> None:
    server, port = ScriptedHandler(), free_port()
    first = Controller(server, hostname="127.0.0.1", port=port)
    first.start()
    restarted = Controller(server, hostname="127.0.0.1", port=port)
    try:
        transport = SmtpTransport(host="127.0.0.1", port=port, tls=Tls.NONE, timeout=5)
        with transport.connect() as link:
            link.send("desk@example.in", "a@example.com", b"Subject: one\r\n\r\nx\r\n", "k1")
            # The server restarts (as after its idle timeout): the open connection is gone.
            first.stop()
            restarted.start()
            link.send("desk@example.in", "b@example.com", b"Subject: two\r\n\r\nx\r\n", "k2")
            assert link.connections == 2
    finally:
        restarted.stop()
    assert [to for _, to, _ in server.received] == [["a@example.com"], ["b@example.com"]]
    assert len(set(server.peers)) == 2


@dataclass
class SessionLimit(ScriptedHandler):
    """Says 421 to the third MAIL FROM of a connection, as servers with a per-session limit do."""

    mails: dict[object, int] = field(default_factory=dict)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mails[id(session)] = self.mails.get(id(session), 0) + 1
        if self.mails[id(session)] > 2:
            return "421 4.7.0 Too many messages in this session"
        envelope.mail_from = address
        return "250 OK"


def test_a_server_closing_a_full_session_gets_a_new_connection_and_nothing_waits(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    server = SessionLimit()
    with serving(server) as controller:
        app = smtp_app(make_settings, sqlite_url, port=controller.port)
        reports(app, clock, 3)

        counts = app.deliverer.flush(clock.now())

        assert counts[DeliveryResult.SENT] == 6
        assert len(server.received) == 6
        assert len(set(server.peers)) == 3  # two emails per connection
        assert all(r.status is OutboxStatus.SENT and r.attempts == 1 for r in rows(app))
        app.engine.dispose()


def test_an_unanswering_server_costs_one_timeout_per_run_not_one_per_message(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    with tarpit() as (port, accepted):
        app = smtp_app(make_settings, sqlite_url, port=port, timeout="PT1S")
        reports(app, clock, 3)

        counts = app.deliverer.flush(clock.now())

        assert counts[DeliveryResult.RETRY] == 6
        assert len(accepted) == 1
        errors = {r.last_error for r in rows(app)}
        assert len(errors) == 1 and "Timeout" in errors.pop()
        assert all(r.status is OutboxStatus.PENDING and r.attempts == 1 for r in rows(app))
        app.engine.dispose()


@contextmanager
def tarpit() -> Iterator[tuple[int, list[socket.socket]]]:
    """A loopback port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        for held in accepted:
            held.close()
        listener.close()


@pytest.mark.parametrize("method", ["xoauth2", "oauthbearer"])
def test_a_token_login_fetches_one_token_per_connection(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock, tmp_path: Path, method: str
) -> None:
    token_file = tmp_path / "token"
    good = {"first-token"}
    token_file.write_text("first-token\n")
    with bearer_smtp_server(good.__contains__) as (server, controller):
        app = smtp_app(
            make_settings,
            sqlite_url,
            port=controller.port,
            username="mentor4u@ecareermentor.in",
            auth=method,
            token_command=[sys.executable, "-c", PRINT_FILE, str(token_file)],
        )
        reports(app, clock, 2)
        assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 4
        assert server.tokens == ["first-token"]

        # The token expired; the command now prints its successor.
        good.clear()
        good.add("second-token")
        token_file.write_text("second-token\n")
        reports(app, clock, 1, tag="later")
        assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 2
        assert server.tokens == ["first-token", "second-token"]
        assert len(server.received) == 6

        ok = check_smtp(app.settings)
        assert ok.ok, ok.detail
        assert f"login accepted ({method})" in ok.detail
        app.engine.dispose()


def test_a_refused_token_keeps_the_mail_for_later(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    with bearer_smtp_server(lambda _token: False) as (server, controller):
        app = smtp_app(
            make_settings,
            sqlite_url,
            port=controller.port,
            username="mentor4u@ecareermentor.in",
            auth="xoauth2",
            token_command=[sys.executable, "-c", "print('expired-token')"],
        )
        reports(app, clock, 2)

        counts = app.deliverer.flush(clock.now())

        assert counts[DeliveryResult.RETRY] == 4
        assert server.tokens == ["expired-token"]  # one refused login, not one per message
        assert server.received == []
        assert all(
            r.status is OutboxStatus.PENDING and r.last_error.startswith("login refused: 535")
            for r in rows(app)
        )
        # The JSON status the server sent before refusing is kept for the operator.
        assert '(server status: {"status":"401","schemes":"bearer"})' in rows(app)[0].last_error
        failed = check_smtp(app.settings)
        assert not failed.ok
        assert "login refused: 535" in failed.detail
        app.engine.dispose()


def test_a_server_without_the_mechanism_is_named_and_no_token_is_fetched(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = (sys.executable, "-c", f"open({str(ran)!r}, 'w'); print('t')")
    with smtp_server() as (server, port):
        transport = SmtpTransport(
            host="127.0.0.1",
            port=port,
            tls=Tls.NONE,
            username="desk",
            method=LoginMethod.OAUTHBEARER,
            token=TokenCommand(command, 5),
        )
        with pytest.raises(SendError) as refused, transport.connect() as link:
            link.send("desk@example.in", "a@example.com", b"Subject: x\r\n\r\nx\r\n", "k")
    assert "the server does not offer OAUTHBEARER" in str(refused.value)
    assert not refused.value.permanent
    assert not ran.exists()
    assert server.received == []
