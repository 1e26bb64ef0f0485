"""Opening cases from reports and questions, and adding follow-ups to them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.db import planned_afresh
from casework.desk import Desk
from casework.held_rows import hold_row, naming_tables
from casework.inbound import InboundRecord, insert_inbound
from casework.models import (
    Case,
    CaseKind,
    CaseStatus,
    Detection,
    InboundMessage,
    OutboxMessage,
    Party,
    case_ref,
)
from casework.notices import AutoSubmitted, Notice
from casework.people import ensure_person, find_person_id, normalise_address, note_person
from casework.rules import RULES, guess_rule, is_question

_REF = re.compile(r"^\s*TS-(\d{1,12})\s*$", re.IGNORECASE)
# An address in a report's text. Bounded repeats: an unbounded `[\w.+'-]+@` is quadratic on a
# long run of letters with no @. A match starts only where a run of local-part characters
# starts (the look-behind), so it is tried once per run instead of at every character, and a
# run longer than an address's 64 characters is no address, not even by its tail.
_ADDRESS = re.compile(r"(?<![\w.+'-])[\w.+'-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,10}")
_CASES = cast(Table, Case.__table__)
_INSERT_CASE = naming_tables(insert(_CASES))


class UnknownCase(LookupError):
    """No case has that reference."""


def parse_ref(ref: str) -> int:
    found = _REF.match(ref)
    if found is None:
        raise UnknownCase(f"{ref!r} is not a case reference (TS-<number>)")
    return int(found.group(1))


def get_case(session: Session, ref: str) -> Case:
    case = session.get(Case, parse_ref(ref))
    if case is None:
        raise UnknownCase(f"no case {ref.strip().upper()}")
    return case


@dataclass(frozen=True)
class OpenedCase:
    case_id: int
    inbound_id: int


def open_case(
    desk: Desk,
    session: Session,
    message: InboundRecord,
    now: datetime,
    *,
    proactive: bool,
    reading: TextReading,
) -> OpenedCase:
    """A new report or question: the case, the reporter's acknowledgement, the moderators' email.

    `proactive`: a moderator (authenticated as for commands) wrote to the desk afresh, so the
    case was found by proactive monitoring: notices say so, and the moderator gets no
    acknowledgement (the new-case email is theirs too). The reporter (if new), the case and
    the message are written with plain statements, held with the group's other rows where ids
    were drawn ahead (see `hold_row`): this is the intake's commonest path, and nothing here
    reads them back as ORM rows. `reading` is what its text says (`read_text`).
    """
    reporter = note_person(session, message.from_address, now, message.from_name)
    question = not proactive and reading.question
    kind = CaseKind.QUESTION if question else CaseKind.REPORT
    detection = Detection.PROACTIVE if proactive else Detection.COMMUNITY_REPORT
    suggested = None if kind is CaseKind.QUESTION else reading.suggested_rule
    title = (message.subject or "(no subject)")[:300]
    case_id = hold_row(
        session,
        _INSERT_CASE,
        {
            "kind": kind,
            "status": CaseStatus.OPEN,
            "detection": detection,
            "suggested_category": suggested,
            "reporter_id": reporter.id,
            "title": title,
            "created_at": now,
            "updated_at": now,
        },
    )
    inbound_id = insert_inbound(session, message, case_id=case_id, party=Party.REPORTER)
    record_event(
        session,
        now,
        "case.opened",
        actor=reporter.email,
        case_id=case_id,
        person_id=reporter.id,
        case_kind=kind.value,
        message=inbound_id,
        suggested_category=suggested,
        detection=detection.value,
    )
    ref = case_ref(case_id)
    if not proactive:
        _acknowledge(desk, session, ref, case_id, kind, reporter.email, message.message_id, now)
    summary = summarise_case(
        case_id=case_id,
        kind=kind,
        status=CaseStatus.OPEN,
        title=title,
        created_at=now,
        suggested_category=suggested,
        reporter=reporter.email,
    )
    # A reporter first written just now has no earlier cases to count.
    history = (
        dict(_NO_HISTORY) if reporter.new else history_of(session, reporter.id, other_than=case_id)
    )
    context = moderator_context(session, summary, history, message, desk, reading.mentioned)
    desk.tell_moderators(session, "moderator/new-case", case_id, context, now)
    return OpenedCase(case_id, inbound_id)


def _acknowledge(
    desk: Desk,
    session: Session,
    ref: str,
    case_id: int,
    kind: CaseKind,
    reporter: str,
    message_id: str | None,
    now: datetime,
) -> None:
    """The reporter's receipt: the case reference only, never their own words (no relaying)."""
    desk.notices.queue(
        session,
        Notice(
            template="reporter/acknowledgement",
            recipient=reporter,
            party=Party.REPORTER,
            case_id=case_id,
            # Nothing the sender wrote (not even their display name) is given to the template.
            context={"ref": ref, "kind": kind.value},
            in_reply_to=message_id,
            references=(message_id,) if message_id else (),
            auto_submitted=AutoSubmitted.AUTO_REPLIED,
        ),
        now,
    )


CASELESS_NOTICE = "moderator/caseless-reply"


def caseless_mail_answered(session: Session, thread_ids: list[str | None]) -> OutboxMessage | None:
    """Our own mail of no case (a digest, a notice like this one) that a message answers."""
    ids = [i for i in thread_ids if i]
    if not ids:
        return None
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.message_id.in_(ids))
        .where(OutboxMessage.case_id.is_(None))
        .limit(1)
    ).first()


def answer_caseless_reply(
    desk: Desk, session: Session, inbound: InboundMessage, answered: OutboxMessage, now: datetime
) -> None:
    """A moderator answered mail that belongs to no case: nothing is applied, and they are told.

    An answer to this very notice is only recorded: a mailbox that auto-answers everything
    must not loop with the desk.
    """
    record_event(
        session, now, "message.caseless-reply", actor=inbound.from_address,
        message=inbound.id, answered=answered.template,
    )  # fmt: skip
    if answered.template == CASELESS_NOTICE:
        return
    desk.notices.queue(
        session,
        Notice(
            template=CASELESS_NOTICE,
            recipient=inbound.from_address,
            party=Party.MODERATOR,
            case_id=None,
            context={"answered_subject": answered.subject, "date": inbound.date or now},
            in_reply_to=inbound.message_id,
            references=(inbound.message_id,) if inbound.message_id else (),
            auto_submitted=AutoSubmitted.AUTO_REPLIED,
        ),
        now,
    )


def add_follow_up(
    desk: Desk,
    session: Session,
    case: Case,
    inbound: InboundMessage,
    party: Party,
    now: datetime,
) -> None:
    """A participant wrote again: keep it on the case and tell the moderators, party by party."""
    inbound.case_id = case.id
    inbound.party = party
    case.updated_at = now
    person = ensure_person(session, inbound.from_address, now, inbound.from_name)
    record_event(
        session,
        now,
        f"message.{party.value}",
        actor=person.email,
        case_id=case.id,
        person_id=person.id,
        message=inbound.id,
    )
    if party is Party.MODERATOR:
        return
    context = {
        "ref": case.ref,
        "party": party.value,
        "sender": inbound.from_address,
        "sender_name": inbound.from_name,
        "date": inbound.date or inbound.received_at,
        "text": inbound.body_text,
        "attachments": [(a.filename, a.content_type, a.size) for a in inbound.attachments],
        "case": case_summary(session, case),
    }
    desk.tell_moderators(session, "moderator/follow-up", case.id, context, now)


def case_summary(session: Session, case: Case) -> dict[str, object]:
    """The plain facts of a case, for templates and the CLI."""
    return summarise_case(
        case_id=case.id,
        kind=case.kind,
        status=case.status,
        title=case.title,
        created_at=case.created_at,
        category=case.category,
        suggested_category=case.suggested_category,
        reporter=case.reporter.email if case.reporter else None,
        subject=case.subject.email if case.subject else None,
        program=case.program.code if case.program else None,
        assignee=case.assignee,
    )


def summarise_case(
    *,
    case_id: int,
    kind: CaseKind,
    status: CaseStatus,
    title: str,
    created_at: datetime,
    category: str | None = None,
    suggested_category: str | None = None,
    reporter: str | None = None,
    subject: str | None = None,
    program: str | None = None,
    assignee: str | None = None,
) -> dict[str, object]:
    """The plain facts of a case from its values (a case just written is not read back)."""
    return {
        "ref": case_ref(case_id),
        "kind": kind.value,
        "status": status.value,
        "category": category,
        "suggested_category": suggested_category,
        "reporter": reporter,
        "subject": subject,
        "program": program,
        "assignee": assignee,
        "title": title,
        "created_at": created_at,
    }


# A person's cases as reporter and as subject, leaving out one case (or none: id 0). These run
# for every new case, on the table's columns: plain statements skip the ORM's result machinery.
_HISTORY = naming_tables(
    select(
        func.count().filter(_CASES.c.reporter_id == bindparam("person")),
        func.count().filter(_CASES.c.subject_id == bindparam("person")),
    ).where(
        or_(
            _CASES.c.reporter_id == bindparam("person"),
            _CASES.c.subject_id == bindparam("person"),
        ),
        _CASES.c.id != bindparam("other_than"),
    )
)
_OPEN_CASES_ABOUT = naming_tables(
    select(_CASES.c.id)
    .where(_CASES.c.subject_id == bindparam("person"))
    .where(_CASES.c.status == CaseStatus.OPEN)
    .order_by(_CASES.c.id)
)


_NO_HISTORY = {"as_reporter": 0, "as_subject": 0}


def history_of(
    session: Session, person_id: int, *, other_than: int | None = None
) -> dict[str, int]:
    """How often this person has come to the desk, as reporter and as subject.

    `other_than` leaves out one case (the one being shown), so the counts are "earlier" ones.
    """
    with planned_afresh(session):  # a count over a table that grows with every report
        as_reporter, as_subject = session.execute(
            _HISTORY, {"person": person_id, "other_than": other_than or 0}
        ).one()
    return {"as_reporter": int(as_reporter or 0), "as_subject": int(as_subject or 0)}


def person_history(session: Session, email: str) -> dict[str, object]:
    """A person's history with the desk and the open cases about them, by address."""
    person_id = find_person_id(session, email)
    if person_id is None:
        return {"email": email, **_NO_HISTORY, "open_cases": []}
    open_cases = session.execute(_OPEN_CASES_ABOUT, {"person": person_id}).scalars()
    return {
        "email": normalise_address(email),
        **history_of(session, person_id),
        "open_cases": [case_ref(case_id) for case_id in open_cases],
    }


def mentioned_addresses(text: str, sender: str, desk_address: str) -> list[str]:
    """The addresses a report names, other than its sender's and the desk's: at most ten."""
    found = {address.lower() for address in _ADDRESS.findall(text)}
    return sorted(found - {sender.lower(), desk_address.lower()})[:10]


@dataclass(frozen=True)
class TextReading:
    """What a new case takes from its message's text alone: pure work, which the IMAP intake
    does in its parse helper, off the database path."""

    question: bool  # reads as a policy question, not a report
    suggested_rule: str | None  # the rule the text suggests, question or not
    mentioned: tuple[str, ...]  # as `mentioned_addresses`


def read_text(subject: str, text: str, sender: str, desk_address: str) -> TextReading:
    return TextReading(
        question=is_question(subject, text),
        suggested_rule=guess_rule(f"{subject}\n{text}"),
        mentioned=tuple(mentioned_addresses(text, sender, desk_address)),
    )


def moderator_context(
    session: Session,
    summary: dict[str, object],
    reporter_history: dict[str, int],
    message: InboundRecord,
    desk: Desk,
    mentioned: Sequence[str],
) -> dict[str, object]:
    """Everything a moderator needs to decide about a new case, in one email. `mentioned`: the
    addresses the message names (`read_text`)."""
    return {
        "ref": summary["ref"],
        "case": summary,
        "sender": message.from_address,
        "sender_name": message.from_name,
        "subject_line": message.subject,
        "date": message.date or message.received_at,
        "text": message.body_text,
        "truncated": message.truncated,
        "attachments": [(a.filename, a.content_type, a.size) for a in message.attachments],
        "reporter_history": reporter_history,
        "mentioned": list(mentioned),
        "mentioned_history": [person_history(session, address) for address in mentioned],
        "rules": [(rule.code, rule.title) for rule in RULES],
    }
