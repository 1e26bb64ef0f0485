"""A real message through the pipeline: rows, evidence and outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy.exc import DBAPIError

from casework.cases import case_summary, moderator_context
from casework.clock import FixedClock
from casework.db import make_engine
from casework.models import (
    Attachment,
    AuditEvent,
    Case,
    CaseKind,
    Disposition,
    InboundMessage,
    OutboxMessage,
    Party,
    Person,
    QuarantineEntry,
)
from intake.pipeline import Outcome, SourceRef
from intake.seen import find_seen
from scheduler.app import App
from tests.conftest import MODERATORS
from tests.mail import make_mail, parse

REPORT_SUBJECT = "Mentor asked me to pay on WhatsApp"
REPORT_TEXT = "My mentor karan.mentor@example.com asked me to pay him directly on WhatsApp."


def ingest(app: App, raw: bytes, clock: FixedClock, label: str = "test") -> Outcome:
    return app.pipeline.process(raw, SourceRef(label=label), clock.now()).outcome


def test_a_report_opens_a_case_and_tells_reporter_and_moderators(
    app: App, clock: FixedClock
) -> None:
    raw = make_mail(
        name="Priya Sharma",
        attachments=[("chat.png", "image/png", b"\x89PNG fake screenshot bytes")],
    )
    result = app.pipeline.process(raw, SourceRef(label="t"), clock.now())
    assert result.outcome is Outcome.PROCESSED
    assert result.disposition is Disposition.NEW_CASE

    with app.sessions() as session:
        case = session.scalars(select(Case)).one()
        assert case.kind is CaseKind.REPORT
        assert case.suggested_category == "off-platform"
        reporter = session.get_one(Person, case.reporter_id)
        assert (reporter.email, reporter.name) == ("priya.student@example.com", "Priya Sharma")
        inbound = session.scalars(select(InboundMessage)).one()
        assert inbound.raw == raw
        assert inbound.sha256 == hashlib.sha256(raw).hexdigest()
        assert inbound.case_id == case.id and inbound.party is Party.REPORTER
        attachment = session.scalars(select(Attachment)).one()
        assert attachment.filename == "chat.png"
        assert attachment.sha256 == hashlib.sha256(b"\x89PNG fake screenshot bytes").hexdigest()
        assert [e.kind for e in session.scalars(select(AuditEvent))] == ["case.opened"]
        outbox = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()

    assert [row.recipient for row in outbox] == ["priya.student@example.com", *MODERATORS]
    ack = parse(outbox[0].raw)
    assert ack["Subject"] == f"[{case.ref}] We received your report"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == inbound.message_id
    assert ack["Message-ID"] == outbox[0].message_id
    assert ack["Reply-To"].addresses[0].addr_spec.startswith("mentor4u+")
    ack_text = ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert case.ref in ack_text
    assert REPORT_SUBJECT not in ack_text and "WhatsApp" not in ack_text
    assert ack.get_body(("html",)) is not None

    alert = parse(outbox[1].raw)
    assert alert["To"] == MODERATORS[0]
    body = alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert REPORT_TEXT in body
    assert "Priya Sharma <priya.student@example.com>" in body
    assert "04 January 2027, 08:55 UTC" in body
    assert "chat.png (image/png" in body
    assert "karan.mentor@example.com" in body
    assert "/strike" in body  # the cheat-sheet
    reply_to = alert["Reply-To"].addresses[0].addr_spec
    assert reply_to != ack["Reply-To"].addresses[0].addr_spec  # one token per party and recipient


def test_a_question_opens_a_question_case(app: App, clock: FixedClock) -> None:
    raw = make_mail(
        sender="arjun.mentor@example.com",
        subject="Sharing my LinkedIn",
        body="Is it allowed to share my LinkedIn profile with my students?",
    )
    ingest(app, raw, clock)
    with app.sessions() as session:
        case = session.scalars(select(Case)).one()
        assert case.kind is CaseKind.QUESTION
        ack = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert ack is not None and ack.subject.endswith("We received your question")


def test_the_same_message_is_processed_once(app: App, clock: FixedClock) -> None:
    raw = make_mail(message_id="<once@client.example>")
    assert ingest(app, raw, clock) is Outcome.PROCESSED
    assert ingest(app, raw, clock) is Outcome.DUPLICATE
    resent = make_mail(message_id="<once@client.example>", body="different bytes, same id")
    assert ingest(app, resent, clock) is Outcome.DUPLICATE
    with app.sessions() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc())) == 1
        rows = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [r.disposition for r in rows] == [
            Disposition.NEW_CASE,
            Disposition.DUPLICATE,
            Disposition.DUPLICATE,
        ]
        assert rows[1].raw == b""  # identical bytes are kept once
        assert rows[2].raw == resent  # different bytes are evidence too
        assert len(session.scalars(select(OutboxMessage)).all()) == 3


def test_without_message_id_the_bytes_decide(app: App, clock: FixedClock) -> None:
    raw = make_mail().replace(b"Message-ID:", b"X-Old-ID:")
    assert ingest(app, raw, clock) is Outcome.PROCESSED
    assert ingest(app, raw, clock) is Outcome.DUPLICATE
    assert ingest(app, raw + b"\n", clock) is Outcome.PROCESSED


def test_a_reply_to_the_acknowledgement_joins_the_case(app: App, clock: FixedClock) -> None:
    ingest(app, make_mail(), clock)
    with app.sessions() as session:
        ack = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert ack is not None
    reply_to = parse(ack.raw)["Reply-To"].addresses[0].addr_spec
    follow = make_mail(subject=f"Re: {ack.subject}", body="Here is his UPI id.", to=reply_to)
    result = app.pipeline.process(follow, SourceRef(label="t"), clock.now())
    assert result.disposition is Disposition.FOLLOW_UP and result.case_id == 1
    threaded = make_mail(subject="more", body="And a screenshot.", in_reply_to=ack.message_id)
    assert app.pipeline.process(threaded, SourceRef(label="t"), clock.now()).case_id == 1
    forged = make_mail(
        sender="mallory@example.com",
        subject="Re: [TS-1] hi",
        body="let me in",
        to=reply_to,
    )
    assert app.pipeline.process(forged, SourceRef(label="t"), clock.now()).case_id == 2
    with app.sessions() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc())) == 2
        alerts = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "moderator/follow-up")
        ).all()
        assert len(alerts) == 2 * len(MODERATORS)
        assert all(
            "Here is his UPI id." in parse(a.raw).get_body(("plain",)).get_content()  # type: ignore[union-attr]
            for a in alerts[:2]
        )


def test_automated_mail_is_recorded_and_never_answered(app: App, clock: FixedClock) -> None:
    raw = make_mail(
        subject="Out of office",
        headers={"Auto-Submitted": "auto-replied"},
        attachments=[("note.txt", "text/plain", b"back on Monday")],
    )
    result = app.pipeline.process(raw, SourceRef(label="t"), clock.now())
    assert result.disposition is Disposition.AUTOMATED
    with app.sessions() as session:
        assert session.scalars(select(OutboxMessage)).all() == []
        assert session.scalars(select(Case)).all() == []
        inbound = session.scalars(select(InboundMessage)).one()
        assert (inbound.id, inbound.reason) == (result.inbound_id, "auto-reply: auto-submitted")
        assert (inbound.raw, inbound.subject, inbound.case_id) == (raw, "Out of office", None)
        assert [a.filename for a in inbound.attachments] == ["note.txt"]
        events = session.scalars(select(AuditEvent)).all()
        assert [(e.kind, e.detail["message"]) for e in events] == [
            ("message.automated", inbound.id)
        ]


def test_a_failure_rolls_back_and_quarantines_the_raw_bytes(
    app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("simulated bug in casework")

    monkeypatch.setattr("intake.pipeline.open_case", broken)
    raw = make_mail()
    assert ingest(app, raw, clock) is Outcome.QUARANTINED
    assert ingest(app, make_mail(sender="x@example.com"), clock) is Outcome.QUARANTINED
    with app.sessions() as session:
        assert session.scalars(select(InboundMessage)).all() == []  # rolled back whole
        assert session.scalars(select(Person)).all() == []
        entries = session.scalars(select(QuarantineEntry).order_by(QuarantineEntry.id)).all()
        assert entries[0].raw == raw
        assert "simulated bug in casework" in entries[0].reason
        assert "Traceback" in entries[0].error
    monkeypatch.undo()
    # Fixed: the same bytes now go through (quarantine keeps no dedupe record).
    assert ingest(app, raw, clock) is Outcome.PROCESSED


def test_the_audit_log_is_append_only_in_the_database(app: App, clock: FixedClock) -> None:
    ingest(app, make_mail(), clock)
    with app.engine.connect() as connection:
        with pytest.raises(DBAPIError, match="append-only"):
            connection.execute(text("UPDATE audit_events SET actor = 'someone else'"))
        connection.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            connection.execute(text("DELETE FROM audit_events"))
        connection.rollback()


def test_an_oversized_message_is_kept_truncated_and_still_acknowledged(
    make_settings: object, sqlite_url: str, clock: FixedClock
) -> None:
    from scheduler.app import build_app

    settings = make_settings(sqlite_url, intake={"max_message_bytes": 4096})  # type: ignore[operator]
    app = build_app(settings, migrate=True)
    raw = make_mail(attachments=[("big.bin", "application/octet-stream", b"x" * 100_000)])
    assert ingest(app, raw, clock) is Outcome.PROCESSED
    with app.sessions() as session:
        inbound = session.scalars(select(InboundMessage)).one()
        assert inbound.truncated and inbound.size == len(raw) and len(inbound.raw) == 4096
        assert inbound.sha256 == hashlib.sha256(raw).hexdigest()
        recipients = [r.recipient for r in session.scalars(select(OutboxMessage))]
        assert "priya.student@example.com" in recipients
        alert = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "moderator/new-case")
        ).first()
        assert alert is not None
        assert "larger than the size limit" in parse(alert.raw).get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_report_text_is_escaped_in_html_and_html_only_mail_is_read_as_text(
    app: App, clock: FixedClock
) -> None:
    hostile = make_mail(body='<script>alert("x")</script> <img src=x onerror=alert(1)> report')
    ingest(app, hostile, clock)
    html_only = (
        b"From: neha.support@example.com\r\nTo: mentor4u@ecareermentor.in\r\n"
        b"Subject: copied course\r\nMessage-ID: <h1@client.example>\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>This mentor <b>copied</b> my course &amp; slides.</p>"
        b"<script>steal()</script></body></html>\r\n"
    )
    ingest(app, html_only, clock)
    with app.sessions() as session:
        alerts = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.template == "moderator/new-case")
            .order_by(OutboxMessage.id)
        ).all()
        second = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()[1]
    html = parse(alerts[0].raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html
    assert second.body_text == "This mentor copied my course & slides."
    text = parse(alerts[-1].raw).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "This mentor copied my course & slides." in text and "steal()" not in text


def test_the_new_case_email_counts_the_reporters_earlier_cases(app: App, clock: FixedClock) -> None:
    ingest(app, make_mail(), clock)
    ingest(
        app, make_mail(subject="He did it again", body="Another WhatsApp payment request."), clock
    )
    with app.sessions() as session:
        alerts = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.template == "moderator/new-case")
            .where(OutboxMessage.recipient == MODERATORS[0])
            .order_by(OutboxMessage.id)
        ).all()
    texts = [parse(a.raw).get_body(("plain",)).get_content() for a in alerts]  # type: ignore[union-attr]
    assert "Reporter history: 0 earlier case(s) as reporter" in texts[0]
    assert "Reporter history: 1 earlier case(s) as reporter" in texts[1]


def test_the_new_case_email_describes_the_case_as_stored(
    app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case is written with plain inserts and described from the values it was written
    with: the description must be what `case_summary` reads back from the row."""
    told: list[dict[str, object]] = []

    def recording(*args: Any) -> dict[str, object]:
        context = moderator_context(*args)
        told.append(context)
        return context

    monkeypatch.setattr("casework.cases.moderator_context", recording)
    ingest(app, make_mail(), clock)
    ingest(app, make_mail(subject="Is it allowed to share my number?", body="Just asking?"), clock)

    with app.sessions() as session:
        cases = session.scalars(select(Case).order_by(Case.id)).all()
        stored = [case_summary(session, case) for case in cases]
    assert [context["case"] for context in told] == stored
    assert [s["kind"] for s in stored] == ["report", "question"]
    assert stored[0]["suggested_category"] == "off-platform"


def test_a_known_reporter_keeps_their_name_and_gains_a_missing_one(
    app: App, clock: FixedClock
) -> None:
    with app.sessions() as session, session.begin():
        session.add(Person(email="priya.student@example.com", name="", created_at=clock.now()))
    ingest(app, make_mail(name="Priya Sharma"), clock)
    ingest(app, make_mail(name="Someone Else", subject="Again", body="Second report."), clock)

    with app.sessions() as session:
        people = session.scalars(select(Person)).all()
        reporters = {case.reporter_id for case in session.scalars(select(Case))}
    assert [(p.email, p.name) for p in people] == [("priya.student@example.com", "Priya Sharma")]
    assert reporters == {people[0].id}


def test_the_same_mailbox_uid_is_found_before_the_first_record_of_its_message(
    app: App, clock: FixedClock
) -> None:
    def at(uid: int | None) -> SourceRef:
        return SourceRef(mailbox="INBOX", uidvalidity=7, uid=uid)

    raw = make_mail(message_id="<once@client.example>")
    first = app.pipeline.process(raw, at(5), clock.now())
    copy = app.pipeline.process(raw + b"\r\n", at(6), clock.now())
    assert (first.outcome, copy.outcome) == (Outcome.PROCESSED, Outcome.DUPLICATE)
    with_id = make_mail(subject="No id here")
    without_id = b"".join(
        line for line in with_id.splitlines(keepends=True) if not line.startswith(b"Message-ID:")
    )
    app.pipeline.process(without_id, at(8), clock.now())

    once = "<once@client.example>"
    with app.sessions() as session:
        rows = {row.uid: row for row in session.scalars(select(InboundMessage))}
        seen = [
            find_seen(session, once, "x", at(6)),  # its own record, though a duplicate
            find_seen(session, once, "x", at(9)),  # the first record of that Message-ID
            find_seen(session, None, hashlib.sha256(without_id).hexdigest(), SourceRef()),
            find_seen(session, None, "0" * 64, at(5)),  # the mailbox UID alone
            find_seen(session, "<never@client.example>", "x", at(10)),
        ]
    assert rows[6].disposition is Disposition.DUPLICATE and rows[8].message_id is None
    assert [row.uid if row else None for row in seen] == [6, 5, 8, 5, None]


def test_a_sender_added_by_another_writer_meanwhile_does_not_quarantine_the_report(
    app: App, clock: FixedClock
) -> None:
    """`safetydesk ingest` and the IMAP worker may write at once: the other one adds this
    sender between the pipeline's lookup and its insert."""
    other = make_engine(app.settings.database.url)
    raced: list[str] = []

    def add_the_sender_first(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("INSERT INTO people") and not raced:
            raced.append(statement)
            with other.begin() as connection:
                connection.execute(
                    insert(cast(Table, Person.__table__)),
                    {"email": "priya.student@example.com", "name": "", "created_at": clock.now()},
                )

    event.listen(app.engine, "before_cursor_execute", add_the_sender_first)
    try:
        result = ingest(app, make_mail(name="Priya Sharma"), clock)
    finally:
        event.remove(app.engine, "before_cursor_execute", add_the_sender_first)
        other.dispose()

    assert raced and result is Outcome.PROCESSED
    with app.sessions() as session:
        people = session.scalars(select(Person)).all()
        case = session.scalars(select(Case)).one()
        assert session.scalars(select(QuarantineEntry)).all() == []
        assert len(session.scalars(select(InboundMessage)).all()) == 1
        assert len(session.scalars(select(OutboxMessage)).all()) == 1 + len(MODERATORS)
    assert [(p.email, p.name) for p in people] == [("priya.student@example.com", "Priya Sharma")]
    assert case.reporter_id == people[0].id
