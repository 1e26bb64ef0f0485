"""How far each IMAP folder has been read: its UIDVALIDITY and the highest UID handled."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import InboundMessage, MailboxCursor, QuarantineEntry


@dataclass(frozen=True)
class Cursor:
    """`last_uid` is meaningful only under `uidvalidity`; 0 means nothing read yet."""

    folder: str
    uidvalidity: int
    last_uid: int

    def first_uid_for(self, uidvalidity: int) -> int:
        """The first UID still to read; a changed UIDVALIDITY means reading the folder again."""
        return self.last_uid + 1 if uidvalidity == self.uidvalidity else 1


def read_cursor(session: Session, folder: str) -> Cursor:
    row = session.scalars(select(MailboxCursor).where(MailboxCursor.mailbox == folder)).first()
    if row is None:
        return Cursor(folder, 0, 0)
    return Cursor(folder, row.uidvalidity, row.last_uid)


def advance_cursor(
    session: Session, folder: str, uidvalidity: int, last_uid: int, now: datetime
) -> Cursor:
    """Move the cursor forward (never back); a new UIDVALIDITY replaces the old position."""
    row = session.scalars(
        select(MailboxCursor).where(MailboxCursor.mailbox == folder).with_for_update()
    ).first()
    if row is None:
        row = MailboxCursor(mailbox=folder, uidvalidity=uidvalidity, last_uid=last_uid)
        row.updated_at = now
        session.add(row)
    elif row.uidvalidity != uidvalidity:
        row.uidvalidity, row.last_uid, row.updated_at = uidvalidity, last_uid, now
    elif last_uid > row.last_uid:
        row.last_uid, row.updated_at = last_uid, now
    return Cursor(folder, row.uidvalidity, row.last_uid)


def source_label(folder: str, uidvalidity: int, uid: int) -> str:
    """How a quarantine entry names the mailbox UID it came from (the pipeline's format)."""
    return f"{folder} uidvalidity={uidvalidity} uid={uid}"


def already_handled(
    session: Session, folder: str, uidvalidity: int, uids: Collection[int]
) -> tuple[set[int], set[int]]:
    """Of `uids`, those with an inbound record and those already quarantined (two queries)."""
    if not uids:
        return set(), set()
    recorded = set(
        session.scalars(
            select(InboundMessage.uid)
            .where(InboundMessage.mailbox == folder)
            .where(InboundMessage.uidvalidity == uidvalidity)
            .where(InboundMessage.uid.in_(list(uids)))
        )
    )
    labels = {source_label(folder, uidvalidity, uid): uid for uid in uids}
    quarantined = {
        labels[label]
        for label in session.scalars(
            select(QuarantineEntry.source).where(QuarantineEntry.source.in_(list(labels)))
        )
    }
    return {int(u) for u in recorded if u is not None}, quarantined - recorded
