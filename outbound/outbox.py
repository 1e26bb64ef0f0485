"""The transactional outbox: a notice becomes an RFC 5322 message row in the same transaction."""

from __future__ import annotations

import email.policy
import email.utils
import re
import uuid
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage

from sqlalchemy.orm import Session

from casework.models import OutboxMessage, OutboxStatus
from casework.notices import AutoSubmitted, Notice, check_elements
from casework.settings import DeskSettings
from casework.tokens import ReplyToken, reply_address
from outbound.headers import check_address, header_text, verify_composed
from outbound.render import Renderer

LOOP_HEADER = "X-SafetyDesk-Loop"
# A thread header carries message ids only: no spaces, no line breaks, nothing to decode.
_MSGID = re.compile(r"^<[^<>\s\x00-\x1f\x7f=?]{1,500}@[^<>\s\x00-\x1f\x7f=?]{1,250}>$")
_OUR_HEADERS = {
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    LOOP_HEADER,
    "X-SafetyDesk-Case",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
}


class CachingHeaderRegistry(HeaderRegistry):
    """The email package's header registry, minus building a new header class on every use.

    `HeaderRegistry[name]` creates a fresh class each time a header is set; the classes carry no
    state, so one per header name is enough. That was a third of the time spent composing.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


class Outbox:
    """The NoticeSink that renders notices and stores them for the delivery job."""

    def __init__(self, desk: DeskSettings, renderer: Renderer) -> None:
        self._desk = desk
        self._renderer = renderer
        self._policy = email.policy.SMTP.clone(header_factory=CachingHeaderRegistry())

    def queue(self, session: Session, notice: Notice, now: datetime) -> OutboxMessage:
        message_id = make_message_id(self._desk.domain)
        message, raw = self._compose(notice, message_id, now)
        check_elements(notice, plain_text(message))  # before the row exists: refused, not queued
        row = OutboxMessage(
            created_at=now,
            case_id=notice.case_id,
            party=notice.party,
            template=notice.template,
            message_id=message_id,
            recipient=notice.recipient.lower(),
            subject=str(message["Subject"]),
            raw=raw,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )
        session.add(row)
        return row

    def compose(self, notice: Notice, message_id: str, now: datetime) -> EmailMessage:
        """The message for `notice`; header values are set only through the email package."""
        return self._compose(notice, message_id, now)[0]

    def _compose(
        self, notice: Notice, message_id: str, now: datetime
    ) -> tuple[EmailMessage, bytes]:
        context = {"desk": self._desk, "now": now, **notice.context}
        rendered = self._renderer.render(notice.template, context)
        subject = rendered.subject
        if notice.case_id is not None and f"[TS-{notice.case_id}]" not in subject:
            subject = f"[TS-{notice.case_id}] {subject}"
        recipient = check_address(notice.recipient)
        message = EmailMessage(policy=self._policy)
        message["From"] = Address(
            display_name=header_text(self._desk.name), addr_spec=self._desk.address
        )
        message["To"] = Address(addr_spec=recipient)
        if notice.case_id is not None and self._desk.token_secret:
            token = ReplyToken(notice.case_id, notice.party, notice.recipient)
            message["Reply-To"] = Address(
                display_name=header_text(self._desk.name),
                addr_spec=reply_address(self._desk.address, self._desk.token_secret, token),
            )
        message["Subject"] = header_text(subject, limit=900)
        message["Date"] = email.utils.format_datetime(now)
        message["Message-ID"] = message_id
        if notice.in_reply_to and _MSGID.fullmatch(notice.in_reply_to):
            message["In-Reply-To"] = notice.in_reply_to
        references = [i for i in notice.references if _MSGID.fullmatch(i)][-20:]
        if references:
            message["References"] = " ".join(references)
        # RFC 3834 §5: mark our automatic mail so well-behaved responders stay quiet.
        if notice.auto_submitted is not AutoSubmitted.NO:
            message["Auto-Submitted"] = notice.auto_submitted.value
        message["X-Auto-Response-Suppress"] = "All"
        message[LOOP_HEADER] = self._desk.address
        if notice.case_id is not None:
            message["X-SafetyDesk-Case"] = f"TS-{notice.case_id}"
        message.set_content(rendered.text)
        if rendered.html is not None:
            message.add_alternative(rendered.html, subtype="html")
        raw = message.as_bytes(policy=email.policy.SMTP)
        verify_composed(raw, recipient, _OUR_HEADERS)
        return message, raw


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return "" if body is None else str(body.get_content())


def make_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"
