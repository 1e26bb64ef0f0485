"""Finding the case and party an inbound reply belongs to: token, then thread, then subject tag."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import Case, OutboxMessage, Party, Person
from casework.tokens import find_token

_TAG = re.compile(r"\[TS-(\d{1,12})\]")


class MatchedBy(StrEnum):
    TOKEN = "token"
    THREAD = "thread"
    SUBJECT_TAG = "subject-tag"


@dataclass(frozen=True)
class Route:
    """The case, party and recipient an inbound reply was matched to, and how."""

    case_id: int
    party: Party
    recipient: str
    matched_by: MatchedBy


def read_subject_tag(subject: str) -> int | None:
    found = _TAG.search(subject)
    return int(found.group(1)) if found else None


def route_reply(
    session: Session,
    *,
    secret: bytes,
    desk_address: str,
    sender: str,
    token_addresses: list[str],
    thread_ids: list[str],
    subject: str,
) -> Route | None:
    """Match a reply without ever crossing parties; None when it starts something new."""
    token = find_token(secret, token_addresses, desk_address, sender)
    if token is not None:
        return Route(token.case_id, token.party, token.recipient, MatchedBy.TOKEN)
    if thread_ids:
        sent = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.message_id.in_(thread_ids))
            .where(OutboxMessage.recipient == sender)
            .order_by(OutboxMessage.id.desc())
        ).first()
        if sent is not None and sent.case_id is not None and sent.party is not None:
            return Route(sent.case_id, sent.party, sender, MatchedBy.THREAD)
    case_id = read_subject_tag(subject)
    if case_id is not None:
        party = participant_party(session, case_id, sender)
        if party is not None:
            return Route(case_id, party, sender, MatchedBy.SUBJECT_TAG)
    return None


def participant_party(session: Session, case_id: int, address: str) -> Party | None:
    """The side `address` is on in the case, if it is a participant at all."""
    case = session.get(Case, case_id)
    if case is None:
        return None
    for party, person_id in ((Party.REPORTER, case.reporter_id), (Party.SUBJECT, case.subject_id)):
        if person_id is not None:
            person = session.get(Person, person_id)
            if person is not None and person.email == address:
                return party
    was_sent = session.scalars(
        select(OutboxMessage.party)
        .where(OutboxMessage.case_id == case_id)
        .where(OutboxMessage.recipient == address)
        .limit(1)
    ).first()
    return was_sent
