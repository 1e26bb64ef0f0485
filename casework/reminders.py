"""Sweeps that nudge moderators: stale-case reminders and the daily digest of open cases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from casework.cases import case_summary
from casework.db import transaction
from casework.desk import Desk
from casework.models import (
    Case,
    CaseReminder,
    CaseStatus,
    DigestRun,
    InboundMessage,
    Party,
    ReminderKind,
)


def remind_stale_cases(desk: Desk, session: Session, now: datetime) -> int:
    """One reminder per case and threshold crossing: unassigned, or a party left waiting."""
    sent = 0
    unassigned_cutoff = desk.moderators.unassigned_after.before(now)
    for case in session.scalars(
        select(Case)
        .where(Case.status == CaseStatus.OPEN)
        .where(Case.assignee.is_(None))
        .where(Case.created_at <= unassigned_cutoff)
        .order_by(Case.id)
        .with_for_update(skip_locked=True)
    ):
        sent += _remind(desk, session, case, ReminderKind.UNASSIGNED, case.created_at, None, now)
    unanswered_cutoff = desk.moderators.unanswered_after.before(now)
    waiting = (
        select(
            InboundMessage.case_id,
            func.max(InboundMessage.received_at).label("since"),
        )
        .where(InboundMessage.party.in_([Party.REPORTER, Party.SUBJECT]))
        .where(InboundMessage.case_id.is_not(None))
        .group_by(InboundMessage.case_id)
        .subquery()
    )
    rows = session.execute(
        select(Case, waiting.c.since)
        .join(waiting, waiting.c.case_id == Case.id)
        .where(Case.status == CaseStatus.OPEN)
        .where(waiting.c.since <= unanswered_cutoff)
        .order_by(Case.id)
    ).all()
    for case, since in rows:
        since_at = _aware(since)
        answered = case.last_moderator_activity_at
        if answered is not None and answered >= since_at:
            continue
        party = session.scalars(
            select(InboundMessage.party)
            .where(InboundMessage.case_id == case.id)
            .where(InboundMessage.party.in_([Party.REPORTER, Party.SUBJECT]))
            .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
            .limit(1)
        ).first()
        sent += _remind(desk, session, case, ReminderKind.UNANSWERED, since_at, party, now)
    return sent


def _aware(value: datetime) -> datetime:
    from casework.clock import as_utc

    return as_utc(value)


def _remind(
    desk: Desk,
    session: Session,
    case: Case,
    kind: ReminderKind,
    since: datetime,
    party: Party | None,
    now: datetime,
) -> int:
    already = session.scalars(
        select(CaseReminder.id)
        .where(CaseReminder.case_id == case.id)
        .where(CaseReminder.kind == kind)
        .where(CaseReminder.waiting_since == since)
    ).first()
    if already is not None:
        return 0
    session.add(CaseReminder(case_id=case.id, kind=kind, waiting_since=since, sent_at=now))
    context: dict[str, object] = {
        "ref": case.ref,
        "kind": kind.value,
        "since": since,
        "party": party.value if party else "",
        "case": case_summary(session, case),
        "rules": [],
    }
    recipients = [case.assignee] if case.assignee else None
    desk.tell_moderators(
        session, "moderator/reminder", case.id, context, now, recipients=recipients
    )
    session.flush()
    return 1


def send_digest(desk: Desk, session: Session, now: datetime) -> bool:
    """The open cases, to every moderator, once a day from `digest_hour` (UTC) on."""
    if now.hour < desk.moderators.digest_hour:
        return False
    day = now.date().isoformat()
    if session.scalars(select(DigestRun.id).where(DigestRun.day == day)).first() is not None:
        return False
    cases = [
        case_summary(session, case)
        for case in session.scalars(
            select(Case).where(Case.status == CaseStatus.OPEN).order_by(Case.id)
        )
    ]
    session.add(DigestRun(day=day, sent_at=now, open_cases=len(cases)))
    session.flush()  # the unique day stops a second worker here
    desk.tell_moderators(session, "moderator/digest", None, {"day": day, "cases": cases}, now)
    return True


def make_sweeps(
    desk: Desk, sessions: sessionmaker[Session]
) -> tuple[Callable[[datetime], object], ...]:
    """The reminder and digest sweeps, each in its own transaction, for App.sweeps."""

    def reminders(now: datetime) -> int:
        with transaction(sessions) as session:
            return remind_stale_cases(desk, session, now)

    def digest(now: datetime) -> bool:
        try:
            with transaction(sessions) as session:
                return send_digest(desk, session, now)
        except IntegrityError:
            return False  # another worker sent today's digest first

    return (reminders, digest)
