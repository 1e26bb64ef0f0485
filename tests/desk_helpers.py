"""Helpers for conversation tests: feed mail through the pipeline and read what came out."""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.desk import Desk
from casework.models import AuditEvent, Case, OutboxMessage
from intake.insights import Insights
from intake.parse import ParsedMessage
from intake.pipeline import Pipeline, Result, SourceRef
from scheduler.app import App
from tests.mail import make_mail, parse

ASHA = "asha.moderator@ecareermentor.in"
RAVI = "ravi.moderator@ecareermentor.in"
PRIYA = "priya.student@example.com"
KARAN = "karan.mentor@example.com"
TRUSTED = "mx.ecareermentor.in"
PASS = f"{TRUSTED}; dkim=pass header.d=ecareermentor.in; dmarc=pass header.from=ecareermentor.in"


class AppPipeline(Pipeline):
    """The app's real pipeline (or with another `desk`), with a place to look in, or break it,
    as each message is handled: inside the message's transaction, before and after."""

    def __init__(self, app: App, desk: Desk | None = None) -> None:
        super().__init__(
            app.sessions, desk or app.desk, max_message_bytes=app.settings.intake.max_message_bytes
        )

    def _handle(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        insights: Insights | None = None,
    ) -> Result:
        self.before_handling(session, parsed)
        result = super()._handle(session, parsed, source, now, insights)
        self.after_handling(session)
        return result

    def before_handling(self, session: Session, parsed: ParsedMessage) -> None:
        """Called as each message is handled."""

    def after_handling(self, session: Session) -> None:
        """Called once each message is handled, before its transaction ends."""


def feed(app: App, raw: bytes, now: datetime) -> Result:
    return app.pipeline.process(raw, SourceRef(label="test"), now)


def outbox(
    app: App, *, recipient: str | None = None, template: str | None = None
) -> list[OutboxMessage]:
    with app.sessions() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if recipient is not None:
            query = query.where(OutboxMessage.recipient == recipient)
        if template is not None:
            query = query.where(OutboxMessage.template == template)
        return list(session.scalars(query))


def body_of(row: OutboxMessage) -> str:
    message = parse(row.raw)
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")


def reply_to_of(row: OutboxMessage) -> str:
    message = email.message_from_bytes(row.raw, policy=email.policy.default)
    return str(message["Reply-To"].addresses[0].addr_spec)


def case_row(app: App, case_id: int) -> Case:
    with app.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def events(app: App, kind: str) -> list[AuditEvent]:
    with app.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
            )
        )


def open_report(app: App, now: datetime, body: str | None = None) -> int:
    result = feed(
        app,
        make_mail(
            PRIYA,
            "Mentor asked me to pay on WhatsApp",
            body
            or "My mentor karan.mentor@example.com asked me to pay him directly on WhatsApp "
            "for extra sessions.",
            name="Priya Sharma",
        ),
        now,
    )
    assert result.case_id is not None
    return result.case_id


def moderator_reply(
    app: App,
    case_id: int,
    commands: str,
    *,
    moderator: str = ASHA,
    sender: str | None = None,
    auth: Sequence[str] = (PASS,),
    message_id: str | None = None,
    to: str | None = None,
    thread: bool = True,
    subject: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A reply to the new-case email `moderator` got, with the original quoted below."""
    new_case = outbox(app, recipient=moderator, template="moderator/new-case")
    sent = next(row for row in new_case if row.case_id == case_id)
    quoted = "\n".join(f"> {line}" for line in body_of(sent).splitlines())
    body = f"{commands}\n\nOn Mon, 4 Jan 2027 at 09:00, Trust & Safety wrote:\n{quoted}\n"
    raw = make_mail(
        sender or moderator,
        subject or f"Re: {sent.subject}",
        body,
        to=to or reply_to_of(sent),
        message_id=message_id,
        in_reply_to=sent.message_id if thread else None,
    )
    # Authentication-Results go on top, where the receiving server puts them (RFC 8601 §5).
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in extra_headers)
    head += b"".join(f"Authentication-Results: {value}\r\n".encode() for value in auth)
    return head + raw
