"""A group's emails are composed as its held rows are written; on PostgreSQL those go together."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from casework.audit import record_event
from casework.clock import FixedClock
from casework.db import transaction
from casework.held_rows import holding_rows, insert_rows
from casework.models import Case, InboundMessage, OutboxMessage, OutboxStatus, QuarantineEntry
from casework.notices import Notice
from intake.pipeline import Outcome
from outbound.outbox import Outbox
from outbound.render import RenderedEmail
from scheduler.app import App
from tests.conftest import MODERATORS, noting_statements
from tests.test_pipeline_groups import pending, report

OUTBOX = cast(Table, OutboxMessage.__table__)


@pytest.fixture
def events(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements `app` sends and, between them, each email composed, in order."""
    compose = Outbox._compose

    def noted(self: Outbox, notice: Notice, *args: Any) -> bytes:
        seen.append(f"compose {notice.template}")
        return compose(self, notice, *args)

    monkeypatch.setattr(Outbox, "_compose", noted)
    with noting_statements(app.engine) as seen:
        yield seen


def test_a_groups_emails_are_composed_after_its_other_rows_are_sent(
    app: App, clock: FixedClock, events: list[str]
) -> None:
    results = list(app.pipeline.process_group(pending(app, *map(report, range(3))), clock.now))

    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 3
    composed = [i for i, event in enumerate(events) if event.startswith("compose")]
    sent = {event: i for i, event in enumerate(events)}
    # For each report an acknowledgement, and the moderators' email to each moderator.
    assert len(composed) == 3 * (1 + len(MODERATORS))
    assert (
        sent["INSERT INTO cases"] < composed[0]
        and sent["INSERT INTO inbound_messages"] < composed[0]
    )
    assert composed[-1] < sent["INSERT INTO outbox"]
    with app.sessions() as session:
        emails = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert len(emails) == len(composed)
    for row in emails:
        message = email.message_from_bytes(row.raw, policy=email.policy.default)
        assert message["To"] == row.recipient
        assert message["Message-ID"] == row.message_id
        assert message["Subject"] == row.subject


def test_an_email_that_cannot_be_composed_quarantines_its_message_alone(
    app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = Outbox._compose

    def failing(self: Outbox, notice: Notice, rendered: RenderedEmail, *args: Any) -> bytes:
        if notice.case_id is not None and "student1@" in notice.recipient:
            raise ValueError("this email cannot be composed")
        return compose(self, notice, rendered, *args)

    monkeypatch.setattr(Outbox, "_compose", failing)
    results = list(app.pipeline.process_group(pending(app, *map(report, range(3))), clock.now))

    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
    ]
    with app.sessions() as session:
        recipients = set(session.scalars(select(OutboxMessage.recipient)))
        assert session.scalar(select(func.count()).select_from(Case)) == 2
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 2
        quarantined = session.scalars(select(QuarantineEntry)).one()
    assert "student1@example.com" not in recipients
    assert {"student0@example.com", "student2@example.com"} <= recipients
    assert "this email cannot be composed" in quarantined.error


@pytest.mark.postgres
def test_an_error_reported_at_the_end_of_the_writes_is_sqlalchemys(
    pg_app: App, clock: FixedClock
) -> None:
    now = clock.now()
    email_row = {
        "created_at": now,
        "template": "reporter/acknowledgement",
        "message_id": "<twice@ecareermentor.in>",
        "recipient": "student@example.com",
        "subject": "s",
        "raw": b"raw",
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }
    # The emails are the last rows written: their refusal comes with the last answers.
    with (
        pytest.raises(IntegrityError, match="outbox_message_id"),
        transaction(pg_app.sessions) as session,
        holding_rows(session),
    ):
        record_event(session, now, "test.event", actor="test")
        insert_rows(session, insert(OUTBOX), [email_row, dict(email_row)])
    with pg_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
