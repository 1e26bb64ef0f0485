"""Loading a person's enforcement records from the database as the facts the pure policy reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.models import Action, Restriction
from casework.policy import (
    ActionFact,
    RestrictionFact,
    Standing,
    compute_standing,
    restrictions_in_force,
)
from casework.settings import PolicySettings


def action_facts(session: Session, person_id: int) -> list[ActionFact]:
    return [
        ActionFact(a.id, a.case_id, a.kind, a.status, a.effective_at, a.counts_until)
        for a in session.scalars(
            select(Action).where(Action.person_id == person_id).order_by(Action.id)
        )
    ]


def restriction_facts(session: Session, person_id: int) -> list[RestrictionFact]:
    return [
        RestrictionFact(
            id=r.id,
            action_id=r.action_id,
            case_id=r.case_id,
            scope=r.scope,
            program=r.program.code if r.program else None,
            kind=r.kind,
            status=r.status,
            since=r.since,
            until=r.until,
        )
        for r in session.scalars(
            select(Restriction).where(Restriction.person_id == person_id).order_by(Restriction.id)
        )
    ]


def standing_of(
    session: Session, policy: PolicySettings, person_id: int, now: datetime
) -> Standing:
    """Load, then compute: the standing of one person at `now`."""
    session.flush()
    return compute_standing(policy, action_facts(session, person_id), now)


def restrictions_of(
    session: Session, person_id: int, now: datetime, program: str | None = None
) -> list[RestrictionFact]:
    session.flush()
    return restrictions_in_force(restriction_facts(session, person_id), now, program)
