"""The outbox delivered through a real SMTP server: success, temporary and permanent refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import AuditEvent, OutboxMessage, OutboxStatus
from intake.pipeline import SourceRef
from outbound.delivery import DeliveryResult, RetryPolicy
from scheduler.app import App, build_app
from tests.conftest import MODERATORS, SettingsFactory
from tests.mail import make_mail, parse
from tests.smtp_server import ScriptedHandler, smtp_server


@pytest.fixture
def smtp_app(
    make_settings: SettingsFactory, db_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[App, ScriptedHandler]]:
    replies = getattr(request, "param", [])
    with smtp_server(replies) as (handler, port):
        settings = make_settings(
            db_url,
            outbound={
                "transport": "smtp",
                "max_attempts": 3,
                "retry_after": "PT60S",
                "smtp": {"host": "127.0.0.1", "port": port, "tls": "none"},
            },
            moderators={"addresses": MODERATORS[:1]},
        )
        app = build_app(settings, migrate=True)
        yield app, handler
        app.engine.dispose()


def report(app: App, clock: FixedClock) -> None:
    app.pipeline.process(make_mail(), SourceRef(label="t"), clock.now())


def rows(app: App) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_mail_is_delivered_once_by_smtp(
    smtp_app: tuple[App, ScriptedHandler], clock: FixedClock
) -> None:
    app, server = smtp_app
    report(app, clock)
    counts = app.deliverer.flush(clock.now())
    assert counts[DeliveryResult.SENT] == 2
    assert [(f, t) for f, t, _ in server.received] == [
        ("mentor4u@ecareermentor.in", ["priya.student@example.com"]),
        ("mentor4u@ecareermentor.in", [MODERATORS[0]]),
    ]
    delivered = parse(server.received[0][2])
    assert delivered["Message-ID"] == rows(app)[0].message_id
    assert all(r.status is OutboxStatus.SENT and r.sent_at == clock.now() for r in rows(app))
    clock.move_to(clock.now() + timedelta(hours=1))
    assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 0
    assert len(server.received) == 2


@pytest.mark.parametrize(
    "smtp_app", [["451 4.3.0 try later", "451 4.3.0 try later"]], indirect=True
)
def test_a_temporary_refusal_is_retried_with_backoff(
    smtp_app: tuple[App, ScriptedHandler], clock: FixedClock
) -> None:
    app, server = smtp_app
    report(app, clock)
    start = clock.now()
    counts = app.deliverer.flush(start)
    assert counts[DeliveryResult.RETRY] == 2 and server.received == []
    first = rows(app)
    assert [r.status for r in first] == [OutboxStatus.PENDING] * 2
    assert [r.next_attempt_at for r in first] == [start + timedelta(seconds=60)] * 2
    assert "451" in first[0].last_error
    clock.move_to(start + timedelta(seconds=59))
    assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 0  # not due yet
    clock.move_to(start + timedelta(seconds=60))
    assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 2
    assert [r.attempts for r in rows(app)] == [2, 2]
    assert len(server.received) == 2
    assert app.deliverer.flush(clock.now() + timedelta(days=1))[DeliveryResult.SENT] == 0
    assert len(server.received) == 2


@pytest.mark.parametrize("smtp_app", [["550 5.1.1 no such user"]], indirect=True)
def test_a_permanent_refusal_is_dead_at_once_and_recorded_on_the_case(
    smtp_app: tuple[App, ScriptedHandler], clock: FixedClock
) -> None:
    app, server = smtp_app
    report(app, clock)
    counts = app.deliverer.flush(clock.now())
    assert counts == {DeliveryResult.SENT: 1, DeliveryResult.RETRY: 0, DeliveryResult.DEAD: 1}
    dead = rows(app)[0]
    assert dead.status is OutboxStatus.DEAD and dead.attempts == 1 and "550" in dead.last_error
    with app.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.kind == "delivery.dead")).one()
        assert event.case_id == dead.case_id
        assert event.detail["recipient"] == "priya.student@example.com"
    clock.move_to(clock.now() + timedelta(days=2))
    assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 0
    assert server.attempts == 2


@pytest.mark.parametrize("smtp_app", [["421 4.7.0 busy"] * 6], indirect=True)
def test_after_max_attempts_a_message_is_dead(
    smtp_app: tuple[App, ScriptedHandler], clock: FixedClock
) -> None:
    app, _ = smtp_app
    report(app, clock)
    for _ in range(3):
        app.deliverer.flush(clock.now())
        clock.move_to(clock.now() + timedelta(hours=1))
    assert [(r.status, r.attempts) for r in rows(app)] == [(OutboxStatus.DEAD, 3)] * 2


def test_an_unreachable_server_is_a_temporary_failure(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    from tests.smtp_server import free_port

    settings = make_settings(
        sqlite_url,
        outbound={
            "transport": "smtp",
            "smtp": {"host": "127.0.0.1", "port": free_port(), "tls": "none"},
        },
    )
    app = build_app(settings, migrate=True)
    report(app, clock)
    assert app.deliverer.flush(clock.now())[DeliveryResult.RETRY] == 3
    assert all("Connect" in r.last_error or "refused" in r.last_error.lower() for r in rows(app))


def test_a_worker_that_died_mid_send_is_covered_after_the_lease(
    sqlite_app: App, clock: FixedClock, tmp_path: Path
) -> None:
    report(sqlite_app, clock)
    with sqlite_app.sessions.begin() as session:
        for row in session.scalars(select(OutboxMessage)):
            row.status, row.claimed_at = OutboxStatus.SENDING, clock.now()
    assert sqlite_app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 0
    clock.move_to(clock.now() + timedelta(minutes=11))
    assert sqlite_app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 3
    written = sorted((tmp_path / "out" / "new").iterdir())
    assert len(written) == 3
    # Maildir delivery is idempotent per outbox row: a repeated attempt writes nothing new.
    with sqlite_app.sessions.begin() as session:
        for row in session.scalars(select(OutboxMessage)):
            row.status, row.next_attempt_at = OutboxStatus.PENDING, clock.now()
    sqlite_app.deliverer.flush(clock.now())
    assert sorted((tmp_path / "out" / "new").iterdir()) == written


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_delivery_over_tls_with_login(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock, tmp_path: Path, tls: str
) -> None:
    from tests.smtp_server import tls_smtp_server

    (tmp_path / "smtp-password").write_text("correct horse\n")
    with tls_smtp_server(tmp_path, implicit=tls == "ssl", login=("desk", "correct horse")) as (
        server,
        port,
        cert,
    ):
        settings = make_settings(
            sqlite_url,
            outbound={
                "transport": "smtp",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": tls,
                    "username": "desk",
                    "password_file": str(tmp_path / "smtp-password"),
                    "ca_file": str(cert),
                },
            },
        )
        app = build_app(settings, migrate=True)
        report(app, clock)
        assert app.deliverer.flush(clock.now())[DeliveryResult.SENT] == 3
        assert len(server.received) == 3
        (tmp_path / "smtp-password").write_text("wrong\n")
        wrong = make_settings(
            sqlite_url,
            outbound={
                "transport": "smtp",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": tls,
                    "username": "desk",
                    "password_file": str(tmp_path / "smtp-password"),
                    "ca_file": str(cert),
                },
            },
        )
        refused = build_app(wrong)
        refused.pipeline.process(
            make_mail(sender="b@example.com"), SourceRef(label="t"), clock.now()
        )
        counts = refused.deliverer.flush(clock.now())
        assert counts[DeliveryResult.SENT] == 0 and len(server.received) == 3
        assert counts[DeliveryResult.RETRY] == 3
        # A refused login is our configuration, not the message: kept for a retry, never dead.
        errors = [r.last_error for r in rows(refused) if r.status is OutboxStatus.PENDING]
        assert len(errors) == 3 and all(e.startswith("login refused: 535") for e in errors)


def test_an_untrusted_certificate_is_never_accepted(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    from tests.smtp_server import tls_smtp_server

    (tmp_path / "pw").write_text("pw")
    with tls_smtp_server(tmp_path, implicit=False, login=("desk", "pw")) as (server, port, _):
        settings = make_settings(
            sqlite_url,
            outbound={
                "transport": "smtp",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": "starttls",
                    "username": "desk",
                    "password_file": str(tmp_path / "pw"),
                },
            },
        )
        app = build_app(settings, migrate=True)
        report(app, clock)
        assert app.deliverer.flush(clock.now())[DeliveryResult.RETRY] == 3
        assert server.received == []
        assert all("certificate" in r.last_error.lower() for r in rows(app))


def test_retries_wait_twice_as_long_each_time_up_to_the_ceiling() -> None:
    retry = RetryPolicy(
        max_attempts=50, first_delay=timedelta(minutes=1), max_delay=timedelta(hours=6)
    )
    waits = [retry.delay_after(attempts) for attempts in (1, 2, 3, 9, 10, 49)]
    assert waits == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=256),
        timedelta(hours=6),  # 512 minutes would pass the ceiling
        timedelta(hours=6),  # and never overflows, however many attempts
    ]
