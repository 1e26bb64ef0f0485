"""The transactional outbox: a notice becomes an RFC 5322 message row in the same transaction."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property, partial
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from casework.entropy import Entropy
from casework.held_rows import Later, holds_rows, insert_rows
from casework.models import OutboxMessage, OutboxStatus
from casework.notices import (
    LOOP_HEADER,
    AutoSubmitted,
    Notice,
    check_elements,
    make_message_id,
)
from casework.settings import DeskSettings
from casework.tokens import ReplyToken, reply_address
from outbound import mime
from outbound.headers import check_address, header_text, verify_composed
from outbound.render import RenderedEmail, Renderer

# A queued message is written with a plain INSERT, held and sent with a group's others while the
# session holds rows (casework.held_rows).
_INSERT = insert(cast(Table, OutboxMessage.__table__))
# A thread header carries message ids only: printable ASCII, no spaces, nothing to decode.
# "=" and "?" are common in real ids (Gmail's); only "=?", an encoded word's start, is refused.
_MSGID = re.compile(r"^<(?!.*=\?)[!-;=?-~]{1,500}@[!-;=?-~]{1,250}>$")
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


class Outbox:
    """The NoticeSink that renders notices and stores them for the delivery job."""

    def __init__(self, desk: DeskSettings, renderer: Renderer) -> None:
        self._desk = desk
        self._renderer = renderer
        self._date: tuple[datetime, str] | None = None  # the last Date field, and its moment
        self._entropy = Entropy()  # for Message-IDs and MIME boundaries

    @cached_property
    def _fixed(self) -> tuple[str, str, tuple[str, ...]]:
        """What every message carries alike: the desk's display name, its From field, and the
        fields that mark our automatic mail (RFC 3834 §5) and our own loop. Checked on first
        use, as the fields of each message are."""
        name = header_text(self._desk.name)
        sender = mime.mailbox("From", name, check_address(self._desk.address))
        marks = (
            mime.structured("X-Auto-Response-Suppress", "All"),
            mime.structured(LOOP_HEADER, self._desk.address),
        )
        return name, sender, marks

    def _date_field(self, now: datetime) -> str:
        """The Date field for `now`; a report's emails, written at one moment, share it."""
        last = self._date  # read once: the scheduler's threads compose too
        if last is None or last[0] != now:
            last = (now, mime.structured("Date", *email.utils.format_datetime(now).split(" ")))
            self._date = last
        return last[1]

    def queue(self, session: Session, notice: Notice, now: datetime) -> None:
        self.queue_to_each(session, notice, [notice.recipient], now)

    def queue_to_each(
        self, session: Session, notice: Notice, recipients: Sequence[str], now: datetime
    ) -> None:
        """Rendered once (the facts name no recipient), then composed for each recipient with
        their own address, reply token and Message-ID. While the session holds rows, a message
        is composed only as the rows are written (`Later`): on PostgreSQL, while the server runs
        the group's other rows. Either way it is composed inside the transaction, which fails
        with it."""
        rendered = self._render(notice, now)
        check_elements(notice, rendered.text)  # before any row exists: refused, not queued
        later = holds_rows(session)
        rows = []
        for recipient in recipients:
            addressed = replace(notice, recipient=recipient)
            message_id = make_message_id(self._desk.domain, self._entropy.take)
            subject = self._subject(addressed, rendered)
            make = partial(self._compose, addressed, rendered, message_id, now, subject)
            raw: bytes | Later = Later(make) if later else make()
            rows.append(
                {
                    "created_at": now,
                    "case_id": notice.case_id,
                    "party": notice.party,
                    "template": notice.template,
                    "message_id": message_id,
                    "recipient": recipient.lower(),
                    "subject": subject,
                    "raw": raw,
                    "status": OutboxStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
        if rows:  # one statement for all the copies: one round trip on PostgreSQL
            insert_rows(session, _INSERT, rows)

    def compose(self, notice: Notice, message_id: str, now: datetime) -> bytes:
        """The message for `notice`, exactly as `queue` would store it."""
        rendered = self._render(notice, now)
        return self._compose(notice, rendered, message_id, now, self._subject(notice, rendered))

    def _render(self, notice: Notice, now: datetime) -> RenderedEmail:
        context = {"desk": self._desk, "now": now, **notice.context}
        return self._renderer.render(notice.template, context)

    @staticmethod
    def _subject(notice: Notice, rendered: RenderedEmail) -> str:
        subject = rendered.subject
        if notice.case_id is not None and f"[TS-{notice.case_id}]" not in subject:
            subject = f"[TS-{notice.case_id}] {subject}"
        return header_text(subject, limit=900)

    def _compose(
        self, notice: Notice, rendered: RenderedEmail, message_id: str, now: datetime, subject: str
    ) -> bytes:
        recipient = check_address(notice.recipient)
        name, sender, marks = self._fixed
        fields = [sender, mime.structured("To", recipient)]
        if notice.case_id is not None and self._desk.token_secret:
            token = ReplyToken(notice.case_id, notice.party, notice.recipient)
            reply_to = reply_address(self._desk.address, self._desk.token_secret, token)
            fields.append(mime.mailbox("Reply-To", name, check_address(reply_to)))
        fields += [
            mime.unstructured("Subject", subject),
            self._date_field(now),
            mime.structured("Message-ID", message_id),
        ]
        if notice.in_reply_to and _MSGID.fullmatch(notice.in_reply_to):
            fields.append(mime.structured("In-Reply-To", notice.in_reply_to))
        references = [i for i in notice.references if _MSGID.fullmatch(i)][-20:]
        if references:
            fields.append(mime.structured("References", *references))
        # RFC 3834 §5: mark our automatic mail so well-behaved responders stay quiet.
        if notice.auto_submitted is not AutoSubmitted.NO:
            fields.append(mime.structured("Auto-Submitted", notice.auto_submitted.value))
        fields += marks
        if notice.case_id is not None:
            fields.append(mime.structured("X-SafetyDesk-Case", f"TS-{notice.case_id}"))
        raw = mime.compose(fields, mime.Body(rendered.text, rendered.html), self._entropy.take)
        verify_composed(raw, recipient, _OUR_HEADERS)
        return raw
