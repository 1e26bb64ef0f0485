"""Read-only views of enforcement: the platform's answer, a person's history, a case's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from casework.models import Action, Appeal, Case, Person, Restriction
from casework.people import find_person, normalise_address
from casework.policy import Counting, Standing
from casework.records import restrictions_of, standing_of
from casework.settings import PolicySettings


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _counting(rows: tuple[Counting, ...]) -> list[dict[str, Any]]:
    return [
        {
            "action": f"A-{c.action_id}",
            "case": f"TS-{c.case_id}",
            "since": iso(c.since),
            "until": iso(c.until),
        }
        for c in rows
    ]


def standing_row(standing: Standing) -> dict[str, Any]:
    return {
        "active_warnings": _counting(standing.active_warnings),
        "active_strikes": _counting(standing.active_strikes),
        "active_warning_count": len(standing.active_warnings),
        "active_strike_count": len(standing.active_strikes),
        "lifetime_strikes": standing.lifetime_strikes,
        "strikes_in_history_window": standing.strikes_in_history_window,
        "ban_pending": standing.ban_pending,
        "next_step": standing.next_step.value if standing.next_step else None,
    }


def enforcement_answer(
    session: Session,
    policy: PolicySettings,
    email: str,
    now: datetime,
    program: str | None = None,
) -> dict[str, Any]:
    """Is this person (in this program) restricted at `now`, since when, until when, why."""
    person = find_person(session, email)
    if person is None:
        standing = None
        restrictions = []
    else:
        standing = standing_of(session, policy, person.id, now)
        restrictions = restrictions_of(session, person.id, now, program)
    rows = []
    for fact in restrictions:
        action = session.get_one(Action, fact.action_id)
        rows.append(
            {
                "scope": fact.scope.value,
                "program": fact.program,
                "kind": fact.kind.value,
                "since": iso(fact.since),
                "until": iso(fact.until),
                "case": f"TS-{fact.case_id}",
                "action": f"A-{fact.action_id}",
                "rule": action.rule,
                "counts_as_strike": False,
            }
        )
    empty = {
        "active_warnings": [],
        "active_strikes": [],
        "active_warning_count": 0,
        "active_strike_count": 0,
        "lifetime_strikes": 0,
        "strikes_in_history_window": 0,
        "ban_pending": False,
        "next_step": policy.ladder[0].value,
    }
    return {
        "email": normalise_address(email),
        "program": program,
        "at": iso(now),
        "known": person is not None,
        "restricted": bool(rows),
        "banned": bool(standing and standing.banned),
        "restrictions": rows,
        "standing": standing_row(standing) if standing else empty,
    }


def action_row(action: Action) -> dict[str, Any]:
    appeals = [
        {
            "id": appeal.id,
            "status": appeal.status.value,
            "received_at": iso(appeal.received_at),
            "decided_by": appeal.decided_by,
            "decided_at": iso(appeal.decided_at),
            "reasoning": appeal.reasoning,
        }
        for appeal in action.appeals
    ]
    return {
        "action": action.ref,
        "case": f"TS-{action.case_id}",
        "person": action.person.email,
        "kind": action.kind.value,
        "status": action.status.value,
        "rule": action.rule,
        "facts": action.facts,
        "severity": action.severity,
        "issued_by": action.issued_by,
        "issued_at": iso(action.issued_at),
        "decided_by": action.decided_by,
        "decided_at": iso(action.decided_at),
        "effective_at": iso(action.effective_at),
        "counts_until": iso(action.counts_until),
        "appeal_until": iso(action.appeal_until),
        "ended_at": iso(action.ended_at),
        "ended_by": action.ended_by,
        "end_reason": action.end_reason,
        "restrictions": [restriction_row(r) for r in action.restrictions],
        "appeals": appeals,
    }


def restriction_row(restriction: Restriction) -> dict[str, Any]:
    return {
        "person": restriction.person.email,
        "scope": restriction.scope.value,
        "program": restriction.program.code if restriction.program else None,
        "kind": restriction.kind.value,
        "status": restriction.status.value,
        "since": iso(restriction.since),
        "until": iso(restriction.until),
        "ended_at": iso(restriction.ended_at),
    }


def case_actions(session: Session, case: Case) -> list[dict[str, Any]]:
    """The `actions` of `cases show REF --json`."""
    return [
        action_row(action)
        for action in session.scalars(
            select(Action).where(Action.case_id == case.id).order_by(Action.id)
        )
    ]


def person_history(
    session: Session, policy: PolicySettings, email: str, now: datetime
) -> dict[str, Any] | None:
    """`people show EMAIL`: cases as reporter and subject, actions, restrictions, appeals."""
    person = find_person(session, email)
    if person is None:
        return None
    cases = session.scalars(
        select(Case)
        .where(or_(Case.reporter_id == person.id, Case.subject_id == person.id))
        .order_by(Case.id)
    )
    actions = session.scalars(
        select(Action).where(Action.person_id == person.id).order_by(Action.id)
    )
    restrictions = session.scalars(
        select(Restriction).where(Restriction.person_id == person.id).order_by(Restriction.id)
    )
    appeals = session.scalars(
        select(Appeal).where(Appeal.person_id == person.id).order_by(Appeal.id)
    )
    return {
        "email": person.email,
        "name": person.name,
        "since": iso(person.created_at),
        "programs": [
            {"program": m.program.code, "role": m.role.value} for m in _memberships(person)
        ],
        "cases": [
            {
                "ref": case.ref,
                "as": "reporter" if case.reporter_id == person.id else "subject",
                "kind": case.kind.value,
                "status": case.status.value,
                "category": case.category,
                "created_at": iso(case.created_at),
            }
            for case in cases
        ],
        "actions": [action_row(a) for a in actions],
        "restrictions": [restriction_row(r) for r in restrictions],
        "appeals": [
            {
                "id": appeal.id,
                "action": f"A-{appeal.action_id}",
                "case": f"TS-{appeal.case_id}",
                "status": appeal.status.value,
                "received_at": iso(appeal.received_at),
                "decided_by": appeal.decided_by,
                "reasoning": appeal.reasoning,
            }
            for appeal in appeals
        ],
        "enforcement": enforcement_answer(session, policy, person.email, now),
    }


def _memberships(person: Person) -> list[Any]:
    return sorted(person.memberships, key=lambda m: m.program.code)
