"""Time-driven enforcement: restrictions end, and warnings and strikes expire, when due."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from casework.appeals import notify_restored
from casework.audit import record_event
from casework.db import transaction
from casework.desk import Desk
from casework.models import Action, ActionStatus, Party, Restriction, RestrictionStatus
from casework.notices import Notice
from casework.records import standing_of
from casework.settings import Step
from casework.wording import describe_standing, when


@dataclass(frozen=True)
class SweepResult:
    restrictions_ended: int
    actions_expired: int


@dataclass(frozen=True)
class EnforcementSweep:
    """The sweep the worker runs on its interval and `run --once` runs once."""

    desk: Desk
    sessions: sessionmaker[Session]

    def __call__(self, now: datetime) -> SweepResult:
        return SweepResult(
            restrictions_ended=end_due_restrictions(self.desk, self.sessions, now),
            actions_expired=expire_due_actions(self.desk, self.sessions, now),
        )


def end_due_restrictions(desk: Desk, sessions: sessionmaker[Session], now: datetime) -> int:
    """End every suspension and program restriction whose time is up; one transaction each."""

    def end(session: Session, restriction_id: int) -> None:
        restriction = session.get_one(Restriction, restriction_id)
        restriction.ended_at = restriction.until
        record_event(
            session, now, "restriction.ended", case_id=restriction.case_id,
            person_id=restriction.person_id, restriction=restriction.id,
            restriction_kind=restriction.kind.value, due=when(restriction.until),
        )  # fmt: skip
        notify_restored(desk, session, restriction, now)

    return _claim_each_due(
        sessions, Restriction, Restriction.status, RestrictionStatus.ACTIVE,
        RestrictionStatus.ENDED, Restriction.until, now, end,
    )  # fmt: skip


def expire_due_actions(desk: Desk, sessions: sessionmaker[Session], now: datetime) -> int:
    """Warnings and strikes stop counting on their date (policy: six-month rolling basis)."""

    def expire(session: Session, action_id: int) -> None:
        action = session.get_one(Action, action_id)
        action.ended_at = action.counts_until
        record_event(
            session, now, "action.expired", case_id=action.case_id,
            person_id=action.person_id, action=action.ref, step=action.kind.value,
            due=when(action.counts_until),
        )  # fmt: skip
        _notify_expired(desk, session, action, now)

    return _claim_each_due(
        sessions, Action, Action.status, ActionStatus.ACTIVE, ActionStatus.EXPIRED,
        Action.counts_until, now, expire,
    )  # fmt: skip


def _claim_each_due(
    sessions: sessionmaker[Session],
    model: type[Restriction] | type[Action],
    status: InstrumentedAttribute[Any],
    active: Enum,
    done: Enum,
    due_at: InstrumentedAttribute[Any],
    now: datetime,
    apply: Callable[[Session, int], None],
) -> int:
    """Move each due row from `active` to `done`, one transaction per row; returns how many.

    A conditional update is the claim: of two workers, exactly one changes the row (PostgreSQL
    re-checks the WHERE after waiting on the other's row lock), so running twice, or
    concurrently, applies each transition and sends each notice once.
    """
    with sessions() as session:
        due = list(
            session.scalars(
                select(model.id)
                .where(status == active)
                .where(due_at.is_not(None), due_at <= now)
                .order_by(due_at, model.id)
            )
        )
    changed = 0
    for row_id in due:
        with transaction(sessions) as session:
            claimed = session.execute(
                update(model)
                .where(model.id == row_id)
                .where(status == active)
                .values({status: done})
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            apply(session, row_id)
            changed += 1
    return changed


def _notify_expired(desk: Desk, session: Session, action: Action, now: datetime) -> None:
    person = action.person
    standing = standing_of(session, desk.policy, person.id, now)
    if standing.banned:
        return  # a banned account's standing does not change by expiry
    desk.notices.queue(
        session,
        Notice(
            template="subject/expired",
            recipient=person.email,
            party=Party.SUBJECT,
            case_id=action.case_id,
            context={
                "ref": f"TS-{action.case_id}",
                "name": person.name,
                "action": action.ref,
                "kind": action.kind.value,
                "issued": when(action.effective_at),
                "until": when(action.counts_until),
                "history_note": action.kind is Step.STRIKE,
                "standing": describe_standing(desk.policy, standing),
            },
        ),
        now,
    )
