"""Appeals by the sanctioned person, their decision by another moderator, and revocation."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.desk import Desk
from casework.discretion import refusal_for
from casework.models import (
    Action,
    ActionStatus,
    Appeal,
    AppealStatus,
    Case,
    InboundMessage,
    Party,
    Restriction,
    RestrictionKind,
    RestrictionScope,
    RestrictionStatus,
)
from casework.notices import Notice
from casework.records import restrictions_of, standing_of
from casework.sanctions import EnforcementError, queue_notice
from casework.wording import describe_standing, when

_ACTION_REF = re.compile(r"^\s*A-(\d{1,12})\s*$", re.IGNORECASE)


def parse_action_ref(text: str) -> int:
    """`A-<number>`, the reference every action notice and transcript shows."""
    found = _ACTION_REF.match(text)
    if found is None:
        raise EnforcementError(f"{text.strip()!r} is not an action reference (A-<number>)")
    return int(found.group(1))


def record_appeal(
    desk: Desk, session: Session, case: Case, inbound: InboundMessage, now: datetime
) -> bool:
    """The reported person replied: True when it was recorded as a new appeal of an action in
    force on this case within the appeal window (moderators are then told, with the text).
    False means it is an ordinary follow-up (no action in force, window over, or an appeal is
    already open or decided for that action)."""
    subject = case.subject
    if subject is None or inbound.from_address.strip().lower() != subject.email:
        return False
    action = session.scalars(
        select(Action)
        .where(Action.case_id == case.id, Action.person_id == subject.id)
        .where(Action.status == ActionStatus.ACTIVE)
        .order_by(Action.id.desc())
    ).first()
    if action is None or action.appeal_until is None or now > action.appeal_until:
        return False
    earlier = session.scalars(select(Appeal.id).where(Appeal.action_id == action.id)).first()
    if earlier is not None:
        return False
    appeal = Appeal(
        action_id=action.id,
        case_id=case.id,
        person_id=subject.id,
        inbound_id=inbound.id,
        received_at=now,
        status=AppealStatus.OPEN,
        reasoning="",
    )
    session.add(appeal)
    inbound.case_id = case.id
    inbound.party = Party.SUBJECT
    case.updated_at = now
    session.flush()
    record_event(
        session, now, "appeal.received", actor=subject.email, case_id=case.id,
        person_id=subject.id, action=action.ref, appeal=appeal.id, message=inbound.id,
    )  # fmt: skip
    queue_notice(
        desk,
        session,
        Notice(
            template="subject/appeal-received",
            recipient=subject.email,
            party=Party.SUBJECT,
            case_id=case.id,
            context={"ref": case.ref, "name": subject.name, "action": action.ref,
                     "kind": action.kind.value},
            in_reply_to=inbound.message_id,
            references=(inbound.message_id,) if inbound.message_id else (),
        ),
        now,
    )  # fmt: skip
    context = {
        "ref": case.ref,
        "action": action.ref,
        "kind": action.kind.value,
        "subject": subject.email,
        "issued_by": action.issued_by,
        "text": inbound.body_text,
        "date": inbound.date or inbound.received_at,
    }
    desk.tell_moderators(session, "moderator/appeal", case.id, context, now)
    return True


def open_appeal(session: Session, case: Case) -> Appeal | None:
    return session.scalars(
        select(Appeal)
        .where(Appeal.case_id == case.id, Appeal.status == AppealStatus.OPEN)
        .order_by(Appeal.id.desc())
        .with_for_update()
    ).first()


def decide_appeal(
    desk: Desk,
    session: Session,
    case: Case,
    moderator: str,
    overturn: bool,
    text: str,
    now: datetime,
) -> str:
    """/uphold TEXT or /overturn TEXT by a moderator other than the one who issued the action."""
    verb = "/overturn" if overturn else "/uphold"
    reasoning = text.strip()
    if not reasoning:
        raise EnforcementError(f"{verb} needs the reasoning the person will read: {verb} TEXT")
    appeal = open_appeal(session, case)
    if appeal is None:
        raise EnforcementError(f"{case.ref} has no open appeal")
    named = refusal_for(case, reasoning, "the reasons")
    if named is not None:
        raise EnforcementError(named)
    action = appeal.action
    decider = moderator.strip().lower()
    if decider == action.issued_by:
        raise EnforcementError(
            f"you issued {action.ref}; its appeal must be decided by another moderator"
        )
    appeal.status = AppealStatus.OVERTURNED if overturn else AppealStatus.UPHELD
    appeal.decided_by = decider
    appeal.decided_at = now
    appeal.reasoning = reasoning
    record_event(
        session, now, f"appeal.{appeal.status.value}", actor=decider, case_id=case.id,
        person_id=action.person_id, action=action.ref, appeal=appeal.id, reasoning=reasoning,
    )  # fmt: skip
    lifted: list[Restriction] = []
    if overturn:
        lifted = undo_action(
            desk, session, action, ActionStatus.OVERTURNED, decider, reasoning, now
        )
    _tell_subject(
        desk, session, case, action, "subject/appeal-decided", lifted, now,
        overturned=overturn, reasoning=reasoning,
    )  # fmt: skip
    if overturn:
        return (
            f"{action.ref} overturned: it no longer counts and its restrictions are lifted "
            f"({len(lifted)})"
        )
    return f"{action.ref} upheld; {action.person.email} has been told the reasons"


def revoke_action(
    desk: Desk, session: Session, case: Case, moderator: str, action: str, text: str, now: datetime
) -> str:
    """/revoke A-<n> TEXT: correct a mistake; the action stops counting, restrictions lift."""
    reason = text.strip()
    if not reason:
        raise EnforcementError("/revoke needs the reason: /revoke A-<number> TEXT")
    found = session.get(Action, parse_action_ref(action), with_for_update=True)
    if found is None or found.case_id != case.id:
        raise EnforcementError(f"{action.strip().upper()} is not an action of {case.ref}")
    if found.status not in (ActionStatus.PENDING, ActionStatus.ACTIVE, ActionStatus.EXPIRED):
        raise EnforcementError(f"{found.ref} is already {found.status.value}")
    was_known = found.status is not ActionStatus.PENDING
    named = refusal_for(case, reason, "the reasons") if was_known else None
    if named is not None:
        raise EnforcementError(named)
    revoker = moderator.strip().lower()
    record_event(
        session, now, "action.revoked", actor=revoker, case_id=case.id,
        person_id=found.person_id, action=found.ref, reason=reason,
    )  # fmt: skip
    for appeal in session.scalars(
        select(Appeal).where(Appeal.action_id == found.id, Appeal.status == AppealStatus.OPEN)
    ):
        appeal.status = AppealStatus.WITHDRAWN
        appeal.decided_by = revoker
        appeal.decided_at = now
        appeal.reasoning = reason
    lifted = undo_action(desk, session, found, ActionStatus.REVOKED, revoker, reason, now)
    if was_known:
        _tell_subject(desk, session, case, found, "subject/revoked", lifted, now, reason=reason)
    return f"{found.ref} revoked: it no longer counts; {len(lifted)} restriction(s) lifted"


def _tell_subject(
    desk: Desk,
    session: Session,
    case: Case,
    action: Action,
    template: str,
    lifted: list[Restriction],
    now: datetime,
    **details: object,
) -> None:
    """Tell the person an action on their account changed: what, whether restrictions lifted,
    and their standing now."""
    subject = action.person
    standing = standing_of(session, desk.policy, subject.id, now)
    queue_notice(
        desk,
        session,
        Notice(
            template=template,
            recipient=subject.email,
            party=Party.SUBJECT,
            case_id=case.id,
            context={
                "ref": case.ref,
                "name": subject.name,
                "action": action.ref,
                "kind": action.kind.value,
                "lifted": any(r.person_id == subject.id for r in lifted),
                "standing": describe_standing(desk.policy, standing),
                **details,
            },
        ),
        now,
    )


def undo_action(
    desk: Desk,
    session: Session,
    action: Action,
    status: ActionStatus,
    by: str,
    reason: str,
    now: datetime,
) -> list[Restriction]:
    """The action stops counting at once and every restriction it caused that is still in force
    lifts now, collateral program restrictions included; members are told."""
    action.status = status
    action.ended_at = now
    action.ended_by = by
    action.end_reason = reason
    lifted = [
        r
        for r in action.restrictions
        if r.status is RestrictionStatus.ACTIVE and (r.until is None or now < r.until)
    ]
    for restriction in action.restrictions:
        if restriction.status is RestrictionStatus.ACTIVE:
            restriction.status = RestrictionStatus.LIFTED
            restriction.ended_at = now
    session.flush()
    for restriction in lifted:
        record_event(
            session, now, "restriction.lifted", actor=by, case_id=action.case_id,
            person_id=restriction.person_id, action=action.ref, restriction=restriction.id,
            restriction_kind=restriction.kind.value,
        )  # fmt: skip
        if restriction.kind is RestrictionKind.PROGRAM_RESTRICTION:
            notify_restored(desk, session, restriction, now, early=True)
    return lifted


def notify_restored(
    desk: Desk, session: Session, restriction: Restriction, now: datetime, *, early: bool = False
) -> None:
    """'Your features are restored', to the subject of a suspension or a program member."""
    person = restriction.person
    member = restriction.kind is RestrictionKind.PROGRAM_RESTRICTION
    standing = standing_of(session, desk.policy, person.id, now)
    if standing.banned:
        return  # nothing is restored for a banned account
    program = restriction.program.code if restriction.program else None
    still = [
        r
        for r in restrictions_of(session, person.id, now, program)
        if r.id != restriction.id and (r.scope is RestrictionScope.ACCOUNT or r.program == program)
    ]
    if still:
        return  # another restriction still covers the same features; told when that one ends
    queue_notice(
        desk,
        session,
        Notice(
            template="member/restored" if member else "subject/restored",
            recipient=person.email,
            party=Party.MEMBER if member else Party.SUBJECT,
            case_id=restriction.case_id,
            context={
                "ref": f"TS-{restriction.case_id}",
                "name": person.name,
                "program": restriction.program.code if restriction.program else None,
                "features": restriction.features,
                "since": when(restriction.since),
                "until": when(restriction.until),
                "early": early,
                "standing": describe_standing(desk.policy, standing),
            },
        ),
        now,
    )
