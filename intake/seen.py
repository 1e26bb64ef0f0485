"""Whether a message was handled before: the same mailbox UID, Message-ID or (without one) bytes."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    bindparam,
    cast,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from casework.db import planned_afresh
from casework.held_rows import naming_tables
from casework.models import Disposition, InboundMessage
from casework.read_ahead import CHUNK, read_ahead

if TYPE_CHECKING:
    from intake.pipeline import SourceRef

# A message as `find_seen` is asked about it: its Message-ID, its SHA-256 and where it is from.
Lookup = tuple[str | None, str, "SourceRef"]

_INBOUND: Table = InboundMessage.__table__  # type: ignore[assignment]


def _seen_before(match: ColumnElement[bool]) -> Select[Any]:
    """The record of the same mailbox UID if there is one, else the first record (not itself a
    duplicate) that `match` finds: one statement, as it runs for every message."""
    same_uid = select(_INBOUND.c.id, literal_column("0").label("rank")).where(
        _INBOUND.c.mailbox == bindparam("mailbox"),
        _INBOUND.c.uidvalidity == bindparam("uidvalidity"),
        _INBOUND.c.uid == bindparam("uid"),
    )
    same_message = select(_INBOUND.c.id, literal_column("1").label("rank")).where(
        _INBOUND.c.disposition != Disposition.DUPLICATE, match
    )
    found = union_all(same_uid, same_message).subquery()
    return select(found.c.id).order_by(found.c.rank, found.c.id).limit(1)


_SEEN_BY_MESSAGE_ID = naming_tables(_seen_before(_INBOUND.c.message_id == bindparam("message_id")))
_SEEN_BY_BYTES = naming_tables(_seen_before(_INBOUND.c.sha256 == bindparam("sha256")))

# The candidates of many messages at once: one branch per kind of match, each on its own index.
_UID, _MESSAGE_ID, _BYTES = 0, 1, 2
_CANDIDATES = naming_tables(
    union_all(
        select(
            _INBOUND.c.id,
            literal_column(str(_UID)).label("rank"),
            cast(_INBOUND.c.uid, String).label("key"),  # the branches' keys must be of one type
        ).where(
            _INBOUND.c.mailbox == bindparam("mailbox"),
            _INBOUND.c.uidvalidity == bindparam("uidvalidity"),
            _INBOUND.c.uid.between(bindparam("lowest_uid"), bindparam("highest_uid")),
            _INBOUND.c.uid.in_(bindparam("uids", expanding=True)),
        ),
        select(
            _INBOUND.c.id,
            literal_column(str(_MESSAGE_ID)).label("rank"),
            _INBOUND.c.message_id.label("key"),
        ).where(
            _INBOUND.c.message_id.in_(bindparam("message_ids", expanding=True)),
            _INBOUND.c.disposition != Disposition.DUPLICATE,
        ),
        select(
            _INBOUND.c.id, literal_column(str(_BYTES)).label("rank"), _INBOUND.c.sha256.label("key")
        ).where(
            _INBOUND.c.sha256.in_(bindparam("digests", expanding=True)),
            _INBOUND.c.disposition != Disposition.DUPLICATE,
        ),
    )
)


def find_seen(
    session: Session, message_id: str | None, sha256: str, source: SourceRef
) -> InboundMessage | None:
    """The earlier record of this message: same mailbox UID, same Message-ID, or (a message
    without one) same bytes."""
    ahead = read_ahead(session)
    key = _key(message_id, sha256, source)
    earlier: int | None
    if ahead is not None and key in ahead.seen:
        earlier = ahead.seen[key]
    else:
        where = {"mailbox": source.mailbox, "uidvalidity": source.uidvalidity, "uid": source.uid}
        if message_id:
            earlier = session.scalar(_SEEN_BY_MESSAGE_ID, {**where, "message_id": message_id})
        else:
            earlier = session.scalar(_SEEN_BY_BYTES, {**where, "sha256": sha256})
    return None if earlier is None else session.get(InboundMessage, earlier)


def unseen_ahead(session: Session, message_id: str | None, sha256: str, source: SourceRef) -> bool:
    """Inside `reading_ahead`: whether this message was read ahead and found nowhere."""
    ahead = read_ahead(session)
    key = _key(message_id, sha256, source)
    return ahead is not None and key in ahead.seen and ahead.seen[key] is None


def read_seen_ahead(session: Session, messages: Sequence[Lookup]) -> None:
    """Inside `reading_ahead`: what `find_seen` would find for each of a group's messages (given
    as its Message-ID, SHA-256 and source, in order), in one statement per few hundred.

    A message that shares its Message-ID, bytes or mailbox UID with one before it in the group
    is left out: that one's record, written during the group, may be what it finds.
    """
    ahead = read_ahead(session)
    if ahead is None:
        return
    alone: list[Lookup] = []
    earlier: set[tuple[object, ...]] = set()
    for message_id, sha256, source in messages:
        marks: set[tuple[object, ...]] = {("bytes", sha256)}
        if message_id:
            marks.add(("id", message_id))
        if source.uid is not None:
            marks.add(("uid", source.mailbox, source.uidvalidity, source.uid))
        if not marks & earlier:
            alone.append((message_id, sha256, source))
        earlier |= marks
    for start in range(0, len(alone), CHUNK // 3):
        _read_chunk(session, alone[start : start + CHUNK // 3], ahead.seen)


def _read_chunk(
    session: Session, messages: Sequence[Lookup], seen: dict[Hashable, int | None]
) -> None:
    # The UID branch asks about one mailbox: messages of any other are looked up on their own.
    mailbox = next(
        ((s.mailbox, s.uidvalidity) for _, _, s in messages if s.uid is not None), (None, None)
    )
    messages = [
        (message_id, sha256, source)
        for message_id, sha256, source in messages
        if source.uid is None or (source.mailbox, source.uidvalidity) == mailbox
    ]
    uids = [s.uid for _, _, s in messages if s.uid is not None]
    with planned_afresh(session):
        rows = session.execute(
            _CANDIDATES,
            {
                "mailbox": mailbox[0],
                "uidvalidity": mailbox[1],
                # PostgreSQL scans the index over the range; by the list alone it may filter
                # every UID of the folder.
                "lowest_uid": min(uids, default=None),
                "highest_uid": max(uids, default=None),
                "uids": uids,
                "message_ids": [message_id for message_id, _, _ in messages if message_id],
                "digests": [sha256 for message_id, sha256, _ in messages if not message_id],
            },
        ).all()
    first: dict[tuple[int, str], int] = {}
    for row_id, rank, key in rows:
        mark = (int(rank), key)
        first[mark] = min(first.get(mark, row_id), row_id)
    for message_id, sha256, source in messages:
        found = first.get((_UID, str(source.uid))) if source.uid is not None else None
        if found is None and message_id:
            found = first.get((_MESSAGE_ID, message_id))
        elif found is None:
            found = first.get((_BYTES, sha256))
        seen[_key(message_id, sha256, source)] = found


def _key(message_id: str | None, sha256: str, source: SourceRef) -> Hashable:
    return (message_id or None, sha256, source.mailbox, source.uidvalidity, source.uid)
