"""An inbound message's record as values, written as an ORM row or with plain inserts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from casework.held_rows import hold_row, insert_rows, naming_tables
from casework.models import Attachment, Disposition, InboundMessage, Party
from casework.read_ahead import accounted_for

# Plain INSERTs for the record of a message nothing reads back in its own transaction: on the
# intake's hot path a unit-of-work flush costs several times what the statements do.
# A message's record carries its own Message-ID, bytes and mailbox UID, which the pipeline's
# read-ahead accounts for.
_INSERT_MESSAGE = accounted_for(naming_tables(insert(cast(Table, InboundMessage.__table__))))
_INSERT_ATTACHMENT = naming_tables(insert(cast(Table, Attachment.__table__)))


@dataclass(frozen=True)
class AttachmentFacts:
    """An attachment's description; its bytes stay inside the raw message."""

    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class InboundRecord:
    """What the desk keeps of every message it receives, before it is written."""

    received_at: datetime
    mailbox: str | None
    uidvalidity: int | None
    uid: int | None
    message_id: str | None
    sha256: str
    size: int
    raw: bytes
    truncated: bool
    from_address: str
    from_name: str
    to_addresses: str
    subject: str
    date: datetime | None
    in_reply_to: str | None
    body_text: str
    disposition: Disposition
    reason: str
    defects: tuple[str, ...] = ()
    attachments: tuple[AttachmentFacts, ...] = field(default=())

    def as_row(self) -> InboundMessage:
        """The record as a new ORM row (with its attachments), for paths that work on it."""
        row = InboundMessage(**self.columns())
        row.attachments = [
            Attachment(
                filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256
            )
            for a in self.attachments
        ]
        return row

    def columns(self) -> dict[str, Any]:
        """The inbound_messages columns this record sets (all but the case and the party)."""
        return {
            "received_at": self.received_at,
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "uid": self.uid,
            "message_id": self.message_id,
            "sha256": self.sha256,
            "size": self.size,
            "raw": self.raw,
            "truncated": self.truncated,
            "from_address": self.from_address,
            "from_name": self.from_name,
            "to_addresses": self.to_addresses,
            "subject": self.subject,
            "date": self.date,
            "in_reply_to": self.in_reply_to,
            "body_text": self.body_text,
            "defects": {"defects": list(self.defects)} if self.defects else {},
            "disposition": self.disposition,
            "reason": self.reason,
        }


def insert_inbound(
    session: Session,
    record: InboundRecord,
    *,
    case_id: int | None = None,
    party: Party | None = None,
) -> int:
    """Write `record` (and its attachments) without the ORM, at once or held (see `hold_row`);
    its new id."""
    columns = {**record.columns(), "case_id": case_id, "party": party}
    message_id = hold_row(session, _INSERT_MESSAGE, columns)
    if record.attachments:
        insert_rows(
            session,
            _INSERT_ATTACHMENT,
            [
                {
                    "message_id": message_id,
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                    "sha256": a.sha256,
                }
                for a in record.attachments
            ],
        )
    return message_id
