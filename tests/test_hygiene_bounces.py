"""Bounces tied to our outbox messages and cases; hard bounces suppress an address, soft do not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import (
    AuditEvent,
    Bounce,
    BounceKind,
    HoldKind,
    InboundMessage,
    OutboxHold,
    OutboxMessage,
    OutboxStatus,
    Suppression,
)
from intake.pipeline import SourceRef
from scheduler.app import App
from tests.hygiene_mail import make_dsn
from tests.mail import make_mail

REPORTER = "priya.student@example.com"


def report(app: App, clock: FixedClock, sender: str = REPORTER, n: int = 0) -> OutboxMessage:
    """A new report from `sender`; returns the acknowledgement queued for them."""
    result = app.pipeline.process(
        make_mail(sender, subject=f"Report {n}"), SourceRef(label=f"r{n}"), clock.now()
    )
    assert result.case_id is not None
    with app.sessions() as session:
        return session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.case_id == result.case_id)
            .where(OutboxMessage.recipient == sender)
        ).one()


def bounce(app: App, original: OutboxMessage, clock: FixedClock, **options: object) -> Bounce:
    raw = make_dsn(original.raw, original.recipient, **options)  # type: ignore[arg-type]
    result = app.pipeline.process(raw, SourceRef(label="dsn"), clock.now())
    assert result.disposition is not None and result.disposition.value == "automated"
    with app.sessions() as session:
        return session.scalars(select(Bounce).where(Bounce.inbound_id == result.inbound_id)).one()


def test_a_hard_bounce_is_tied_to_the_outbox_message_and_its_case(
    app: App, clock: FixedClock
) -> None:
    ack = report(app, clock)
    row = bounce(app, ack, clock)
    assert (row.outbox_id, row.case_id, row.recipient) == (ack.id, ack.case_id, REPORTER)
    assert (row.kind, row.status, row.counted) == (BounceKind.HARD, "5.1.1", True)
    with app.sessions() as session:
        inbound = session.get_one(InboundMessage, row.inbound_id)
        assert inbound.case_id == ack.case_id
        assert inbound.reason.startswith("bounce: ")
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "delivery.bounced")
        ).one()
        assert event.case_id == ack.case_id
        assert event.detail["outbox"] == ack.id
        assert session.get_one(OutboxMessage, ack.id).last_error.startswith("bounced (hard")
        # a bounce is never answered: only the report's own mail is in the outbox
        assert all(
            m.recipient != "mailer-daemon@mx.example.net"
            for m in session.scalars(select(OutboxMessage))
        )


def test_a_bounce_without_message_id_is_tied_by_the_reply_token(
    app: App, clock: FixedClock
) -> None:
    ack = report(app, clock)
    # Without our Message-ID and our case header, only the signed reply token is left to match.
    row = bounce(app, ack, clock, headers_only=True, strip_message_id=True, strip_case_header=True)
    assert (row.outbox_id, row.case_id, row.counted) == (ack.id, ack.case_id, True)


def test_a_bounce_naming_only_our_case_header_is_noted_but_never_counted(
    app: App, clock: FixedClock
) -> None:
    # Case numbers are public (subject tags): anyone can write "X-SafetyDesk-Case: TS-1".
    ack = report(app, clock)
    forged = (
        f"To: {REPORTER}\r\nSubject: hi\r\nX-SafetyDesk-Case: TS-{ack.case_id}\r\n\r\nx\r\n"
    ).encode()
    for _ in range(4):
        clock.move_to(clock.now() + timedelta(minutes=1))
        app.pipeline.process(make_dsn(forged, REPORTER), SourceRef(label="forged"), clock.now())
    with app.sessions() as session:
        rows = session.scalars(select(Bounce)).all()
        assert [(r.case_id, r.counted) for r in rows] == [(ack.case_id, False)] * 4
        assert session.scalars(select(Suppression)).all() == []


def test_the_same_message_bounced_again_counts_once(app: App, clock: FixedClock) -> None:
    ack = report(app, clock)
    for _ in range(4):
        clock.move_to(clock.now() + timedelta(minutes=1))
        assert bounce(app, ack, clock).counted
    with app.sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


def test_soft_bounces_and_delays_do_not_count(app: App, clock: FixedClock) -> None:
    ack = report(app, clock)
    delayed = bounce(app, ack, clock, status="4.4.1", action="delayed")
    assert (delayed.kind, delayed.counted, delayed.outbox_id) == (BounceKind.SOFT, False, ack.id)


def test_a_forged_bounce_naming_no_message_of_ours_counts_for_nothing(
    app: App, clock: FixedClock
) -> None:
    stranger = make_mail("karan.mentor@example.com", message_id="<forged@elsewhere.example>")
    for _ in range(5):
        raw = make_dsn(stranger, "karan.mentor@example.com")
        app.pipeline.process(raw, SourceRef(label="forged"), clock.now())
    with app.sessions() as session:
        rows = session.scalars(select(Bounce)).all()
        assert len(rows) == 5
        assert not any(r.counted for r in rows)
        assert session.scalars(select(Suppression)).all() == []


def test_n_hard_bounces_suppress_the_address_and_the_outbox_holds_its_mail(
    app: App, clock: FixedClock
) -> None:
    acks = [report(app, clock, n=n) for n in range(4)]
    app.deliverer.flush(clock.now())
    for ack in acks[:3]:
        clock.move_to(clock.now() + timedelta(minutes=1))
        bounce(app, ack, clock)
    with app.sessions() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.address, suppression.bounces) == (REPORTER, 3)
        assert suppression.until == suppression.since + timedelta(days=30)
    # the next message to that address is held with the reason, not sent
    clock.move_to(clock.now() + timedelta(hours=2))
    later = report(app, clock, n=9)
    app.deliverer.flush(clock.now())
    with app.sessions() as session:
        held = session.get_one(OutboxMessage, later.id)
        assert held.status is OutboxStatus.HELD
        assert "suppressed until" in held.last_error
        hold = session.scalars(select(OutboxHold).where(OutboxHold.outbox_id == later.id)).one()
        assert hold.kind is HoldKind.SUPPRESSED
        assert (
            session.scalars(select(AuditEvent).where(AuditEvent.kind == "address.suppressed"))
            .one()
            .detail["bounces"]
            == 3
        )


def test_suppression_ends_by_itself_after_the_period(
    make_settings: object, sqlite_url: str, clock: FixedClock
) -> None:
    from scheduler.app import build_app

    app = build_app(
        make_settings(sqlite_url, hygiene={"suppress_after_bounces": 1, "suppress_for": "P1D"}),  # type: ignore[operator]
        migrate=True,
    )
    ack = report(app, clock)
    bounce(app, ack, clock)
    later = report(app, clock, n=2)
    app.deliverer.flush(clock.now())
    with app.sessions() as session:
        assert session.get_one(OutboxMessage, later.id).status is OutboxStatus.HELD
    clock.move_to(clock.now() + timedelta(days=1, minutes=1))
    app.deliverer.flush(clock.now())
    with app.sessions() as session:
        assert session.get_one(OutboxMessage, later.id).status is OutboxStatus.SENT
        hold = session.scalars(select(OutboxHold).where(OutboxHold.outbox_id == later.id)).one()
        assert hold.released_at == clock.now()
    app.engine.dispose()


def test_suppressions_cli_lists_and_clears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FixedClock
) -> None:
    from scheduler.cli import main
    from tests.test_hygiene_cli import write_config

    config = write_config(tmp_path, hygiene='suppress_after_bounces = 1\nsuppress_for = "P7D"\n')
    from scheduler.app import build_app
    from scheduler.config import load_settings

    app = build_app(load_settings(config), migrate=True)
    ack = report(app, clock)
    bounce(app, ack, clock)
    later = report(app, clock, n=2)
    app.deliverer.flush(clock.now())
    now = clock.now().isoformat()
    capsys.readouterr()
    assert main(["--config", str(config), "suppressions", "list", "--json", "--now", now]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["address"], r["bounces"]) for r in listed] == [(REPORTER, 1)]
    assert main(["--config", str(config), "suppressions", "clear", REPORTER, "--now", now]) == 0
    assert main(["--config", str(config), "suppressions", "clear", REPORTER, "--now", now]) == 1
    capsys.readouterr()
    assert main(["--config", str(config), "suppressions", "list", "--json", "--now", now]) == 0
    assert json.loads(capsys.readouterr().out) == []
    # cleared: the held message goes out on the next flush
    app.deliverer.flush(clock.now())
    with app.sessions() as session:
        assert session.get_one(OutboxMessage, later.id).status is OutboxStatus.SENT
        row = session.scalars(select(Suppression)).one()
        assert row.cleared_at == clock.now() and row.cleared_by == "cli"
    app.engine.dispose()


def test_an_abuse_report_about_our_mail_is_noted_on_the_case_and_not_answered(
    app: App, clock: FixedClock
) -> None:
    from tests.hygiene_mail import make_arf

    ack = report(app, clock)
    result = app.pipeline.process(make_arf(ack.raw), SourceRef(label="arf"), clock.now())
    assert result.reason == "feedback-report: arf-feedback-report"
    assert result.case_id == ack.case_id
    with app.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "delivery.complaint")
        ).one()
        assert (event.case_id, event.detail["outbox"]) == (ack.case_id, ack.id)
        assert len(session.scalars(select(OutboxMessage)).all()) == 3  # nothing new queued
