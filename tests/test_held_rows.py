"""Held rows: audit events and outbox rows of a group, written together and never missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.clock import FixedClock
from casework.db import transaction
from casework.held_rows import holding_rows, savepoint
from casework.models import AuditEvent, Case, OutboxMessage
from intake.pipeline import Outcome
from scheduler.app import App
from tests.desk_helpers import ASHA, KARAN, body_of, events, moderator_reply, open_report, outbox
from tests.mail import make_mail
from tests.test_pipeline_groups import pending


def kinds(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))


def test_held_events_are_one_statement_at_the_end_in_order(
    app: App, clock: FixedClock, statements: list[str]
) -> None:
    with transaction(app.sessions) as session, holding_rows(session):
        for n in range(3):
            record_event(session, clock.now(), f"test.held{n}")
        assert statements == []  # nothing sent yet
    assert statements == ["INSERT INTO audit_events"]
    with app.sessions() as session:
        assert kinds(session) == ["test.held0", "test.held1", "test.held2"]


def test_a_statement_that_may_read_held_rows_writes_them_first(app: App, clock: FixedClock) -> None:
    with transaction(app.sessions) as session, holding_rows(session):
        record_event(session, clock.now(), "test.first")
        # Any statement not marked by naming_tables (here, an ORM query of the audit log) sees
        # them.
        assert kinds(session) == ["test.first"]
        record_event(session, clock.now(), "test.second")
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
    with app.sessions() as session:
        assert kinds(session) == ["test.first", "test.second"]


def test_a_commit_inside_the_block_writes_what_is_held(app: App, clock: FixedClock) -> None:
    with app.sessions() as session, holding_rows(session):
        record_event(session, clock.now(), "test.committed")
        session.commit()
        session.rollback()  # nothing left to undo: the commit took the held row with it
    with app.sessions() as session:
        assert kinds(session) == ["test.committed"]


def test_a_failed_block_drops_what_it_held_and_holds_no_more(app: App, clock: FixedClock) -> None:
    with (
        pytest.raises(RuntimeError),
        transaction(app.sessions) as session,
        holding_rows(session),
    ):
        record_event(session, clock.now(), "test.dropped")
        raise RuntimeError("the group failed")
    with transaction(app.sessions) as session:
        record_event(session, clock.now(), "test.later")
        # Outside a block an event is written at once: an ORM query sees it without help.
        assert kinds(session) == ["test.later"]


def test_a_group_of_reports_sends_its_events_and_emails_in_one_statement_each(
    app: App, clock: FixedClock, statements: list[str]
) -> None:
    raws = [
        make_mail(
            sender=f"student{n}@example.com",
            message_id=f"<held-{n}@client.example>",
            subject=f"Report {n}: mentor asked for money",
        )
        for n in range(5)
    ]
    results = list(app.pipeline.process_group(pending(app, *raws), clock.now))
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 5
    assert statements.count("INSERT INTO audit_events") == 1
    assert statements.count("INSERT INTO outbox") == 1
    # On PostgreSQL the cases are held too, with ids drawn ahead (tests/test_ids_ahead.py).
    assert statements.count("INSERT INTO cases") == (
        1 if app.engine.dialect.name == "postgresql" else 5
    )
    with app.sessions() as session:
        opened = session.execute(
            select(AuditEvent.case_id)
            .where(AuditEvent.kind == "case.opened")
            .order_by(AuditEvent.id)
        ).scalars()
        assert list(opened) == [r.case_id for r in results]
        sent = session.execute(
            select(OutboxMessage.case_id, OutboxMessage.recipient).order_by(OutboxMessage.id)
        ).all()
        assert [case for case, _ in sent][:2] == [results[0].case_id] * 2
        assert {recipient for case, recipient in sent if case == results[4].case_id} >= {
            "student4@example.com"
        }
        assert len(sent) == 5 * (1 + len(app.settings.moderators.addresses))
        assert session.scalar(select(func.count()).select_from(Case)) == 5


def test_a_resent_command_in_the_same_group_sees_the_first_one_applied(
    deployed_desk: App, clock: FixedClock
) -> None:
    # The replay check reads the audit log, where the first copy's event is still held.
    case_id = open_report(deployed_desk, clock.now())
    copies = [moderator_reply(deployed_desk, case_id, "/reply We are on it.") for _ in range(2)]
    clock.move_to(clock.now() + timedelta(minutes=5))
    results = list(
        deployed_desk.pipeline.process_group(
            pending(deployed_desk, *copies, first_uid=100), clock.now
        )
    )
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 2
    assert len(events(deployed_desk, "commands.applied")) == 1
    assert len(events(deployed_desk, "commands.replayed")) == 1
    assert len(outbox(deployed_desk, template="reporter/reply")) == 1


def test_rows_given_in_a_savepoint_go_when_it_is_rolled_back(app: App, clock: FixedClock) -> None:
    with transaction(app.sessions) as session, holding_rows(session):
        record_event(session, clock.now(), "test.before")
        with pytest.raises(RuntimeError), savepoint(session):
            record_event(session, clock.now(), "test.undone")
            raise RuntimeError("the block was refused")
        record_event(session, clock.now(), "test.after")
    with app.sessions() as session:
        assert kinds(session) == ["test.before", "test.after"]


def test_a_bare_savepoint_is_refused_while_rows_are_held(app: App, clock: FixedClock) -> None:
    with transaction(app.sessions) as session, holding_rows(session):
        record_event(session, clock.now(), "test.held")
        with pytest.raises(RuntimeError, match=r"held_rows\.savepoint"):
            session.begin_nested()


def test_a_block_refused_in_a_group_keeps_nothing_of_itself_and_all_before_it(
    deployed_desk: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enforcement service refuses the block's last command, after the block assigned the
    case and queued a reply with nothing read in between: those go with the savepoint, the
    report before it in the group stays."""
    from casework import enforcement

    refused: list[str] = []

    def refuse(*args: Any) -> str:
        refused.append(args[3])  # the moderator
        raise enforcement.EnforcementError("a warning is already active on this case")

    monkeypatch.setattr(enforcement, "apply_sanction", refuse)
    case_id = open_report(deployed_desk, clock.now())
    block = moderator_reply(
        deployed_desk,
        case_id,
        f"/assign me\n/subject {KARAN}\n/category off-platform\n/reply Thanks.\n"
        "/warn Asked for payment on WhatsApp.",
    )
    other = make_mail(
        sender="student9@example.com",
        message_id="<held-other@client.example>",
        subject="Report: mentor asked for money",
    )
    results = list(
        deployed_desk.pipeline.process_group(pending(deployed_desk, other, block), clock.now)
    )
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 2
    assert refused == [ASHA]  # the block got as far as the savepoint
    assert outbox(deployed_desk, template="reporter/reply") == []
    assert events(deployed_desk, "case.assigned") == []
    assert events(deployed_desk, "case.reply") == []
    [rejected] = events(deployed_desk, "commands.rejected")
    assert [line["status"] for line in rejected.detail["lines"]][-1] == "error"
    [transcript] = outbox(deployed_desk, template="moderator/transcript")
    assert "the enforcement service refused a command" in body_of(transcript)
    opened = [e.case_id for e in events(deployed_desk, "case.opened")]
    assert opened == [case_id, results[0].case_id]
    assert len(outbox(deployed_desk, template="reporter/acknowledgement")) == 2


def test_a_session_that_would_not_write_held_rows_first_cannot_hold_them(app: App) -> None:
    with (
        Session(app.engine) as session,
        pytest.raises(RuntimeError, match="watch_held_rows"),
        holding_rows(session),
    ):
        record_event(session, datetime(2027, 1, 4, tzinfo=UTC), "test.never")
    with app.sessions() as session:
        assert kinds(session) == []
