"""How far each IMAP folder has been read: its UIDVALIDITY and the highest UID handled."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import InboundMessage, MailboxCursor, QuarantineEntry, QuarantineStatus


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


def held_from_earlier_uidvalidity(session: Session, folder: str, uidvalidity: int) -> bool:
    """Whether a message of `folder` quarantined under another UIDVALIDITY is still held (then,
    and only then, fetched messages are worth recognising by content: `quarantined_before`)."""
    earlier, current = f"{folder} uidvalidity=", f"{folder} uidvalidity={uidvalidity} "
    sources = session.scalars(
        select(QuarantineEntry.source)
        .where(QuarantineEntry.status == QuarantineStatus.HELD)
        .where(QuarantineEntry.source.startswith(earlier, autoescape=True))
    )
    return any(not source.startswith(current) for source in sources)


def quarantined_before(
    session: Session, folder: str, uidvalidity: int, digests: Mapping[int, str]
) -> set[int]:
    """Of the fetched UIDs (uid -> SHA-256 of the bytes), those quarantined under an earlier
    UIDVALIDITY of `folder` and still held; their entries are renamed after the new UID.

    A quarantined message left in the folder (flag mode, no quarantine folder) comes back under
    a new UID when the folder is recreated; without this it would fail and be quarantined again.
    """
    if not digests:
        return set()
    entries = session.scalars(
        select(QuarantineEntry)
        .where(QuarantineEntry.sha256.in_(set(digests.values())))
        .where(QuarantineEntry.status == QuarantineStatus.HELD)
        .order_by(QuarantineEntry.id)
    )
    earlier, current = f"{folder} uidvalidity=", f"{folder} uidvalidity={uidvalidity} "
    by_digest: dict[str, list[QuarantineEntry]] = {}
    for entry in entries:
        if entry.source.startswith(earlier) and not entry.source.startswith(current):
            by_digest.setdefault(entry.sha256, []).append(entry)
    found = set()
    for uid, digest in digests.items():
        waiting = by_digest.get(digest)
        if waiting:  # one entry per message: a second copy of the same bytes is a new message
            waiting.pop(0).source = source_label(folder, uidvalidity, uid)
            found.add(uid)
    return found
