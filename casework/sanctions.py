"""Applying the ladder: warnings, strikes with suspensions and program restrictions, and bans."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.desk import Desk
from casework.discretion import refusal_for
from casework.models import (
    Action,
    ActionStatus,
    Case,
    CaseKind,
    CaseStatus,
    Detection,
    OutboxMessage,
    Party,
    Person,
    ProgramMember,
    Restriction,
    RestrictionKind,
    RestrictionScope,
    RestrictionStatus,
)
from casework.notices import Notice, NoticeRefused
from casework.policy import step_index
from casework.records import standing_of
from casework.rules import Rule, find_rule
from casework.settings import Step
from casework.wording import (
    Element,
    SanctionFacts,
    common_elements,
    describe_standing,
    length_words,
    when,
)

ON_RECORD_OR_PENDING = (ActionStatus.PENDING, ActionStatus.ACTIVE, ActionStatus.EXPIRED)


class EnforcementError(Exception):
    """A sanction command that is not allowed now; the message says why, for the transcript."""


def queue_notice(desk: Desk, session: Session, notice: Notice, now: datetime) -> None:
    """Queue in the caller's transaction; a refused notice refuses the whole command."""
    try:
        desk.notices.queue(session, notice, now)
    except NoticeRefused as error:
        raise EnforcementError(f"notice refused: {error}") from error


def case_rule(case: Case) -> Rule:
    rule = find_rule(case.category or "")
    if rule is None:
        raise EnforcementError(
            f"{case.ref} has no rule set; set the rule broken (e.g. spam, harassment) first"
        )
    return rule


def case_actions(session: Session, case: Case) -> list[Action]:
    return list(
        session.scalars(select(Action).where(Action.case_id == case.id).order_by(Action.id))
    )


def lock_case_and_subject(session: Session, case: Case) -> None:
    """Serialise sanctions on one case and one person (PostgreSQL row locks; SQLite has a single
    writer): the next step is read and applied without another command slipping in between."""
    session.execute(select(Case.id).where(Case.id == case.id).with_for_update())
    if case.subject_id is not None:
        session.execute(select(Person.id).where(Person.id == case.subject_id).with_for_update())


def apply_sanction(
    desk: Desk,
    session: Session,
    case: Case,
    moderator: str,
    step: Step | None,
    facts: str,
    now: datetime,
) -> str:
    """/warn, /strike, /ban (explicit step) or /escalate (step None); returns a summary line."""
    policy = desk.policy
    facts = facts.strip()
    verb = f"/{'escalate' if step is None else {'warning': 'warn'}.get(step.value, step.value)}"
    if not facts:
        raise EnforcementError(f"{verb} needs the facts relied on: {verb} TEXT")
    if case.status is CaseStatus.MERGED:
        raise EnforcementError(
            f"{case.ref} was merged into TS-{case.merged_into_id}; act on that case"
        )
    if case.kind is CaseKind.QUESTION:
        raise EnforcementError(f"{case.ref} is a question, not a report; nothing to sanction")
    subject = case.subject
    if subject is None:
        raise EnforcementError(f"{case.ref} has no reported person; set the subject first")
    named = refusal_for(case, facts, "the facts")
    if named is not None:
        raise EnforcementError(named)
    rule = case_rule(case)
    lock_case_and_subject(session, case)
    issuer = moderator.strip().lower()
    for earlier in case_actions(session, case):
        if earlier.status in ON_RECORD_OR_PENDING:
            raise EnforcementError(
                f"{case.ref} already has {earlier.ref} ({earlier.kind.value}, "
                f"{earlier.status.value}); one violation gets one sanction "
                f"(/revoke {earlier.ref} TEXT first to replace it)"
            )
        # An appeal is decided by another moderator; the one whose action it overturned may not
        # put a sanction back on the same violation, or the appeal would decide nothing.
        if earlier.status is ActionStatus.OVERTURNED and earlier.issued_by == issuer:
            raise EnforcementError(
                f"{earlier.ref} was overturned on appeal by {earlier.ended_by}; a moderator "
                f"other than its issuer decides whether {case.ref} gets another sanction"
            )
    standing = standing_of(session, policy, subject.id, now)
    if standing.banned:
        raise EnforcementError(f"{subject.email} is already banned")
    if standing.ban_pending:
        raise EnforcementError(f"a ban of {subject.email} is already waiting for approval")
    due = standing.next_step
    assert due is not None  # only a banned person has no next step
    chosen = step or due
    chosen_index = step_index(policy, chosen)
    if chosen_index is None:
        ladder = " → ".join(s.value for s in policy.ladder)
        raise EnforcementError(f"{chosen.value} is not a step of the configured ladder ({ladder})")
    due_index = step_index(policy, due)
    assert due_index is not None
    if chosen_index > due_index and not (case.severity or "").strip():
        raise EnforcementError(
            f"the next step for {subject.email} is a {due.value}; skipping to a "
            f"{chosen.value} needs a reason: set the case's severity (e.g. high or critical) first"
        )
    action = Action(
        case_id=case.id,
        person_id=subject.id,
        kind=chosen,
        status=ActionStatus.PENDING,
        rule=rule.code,
        facts=facts,
        severity=case.severity,
        issued_by=issuer,
        issued_at=now,
        end_reason="",
    )
    session.add(action)
    session.flush()
    case.updated_at = now
    case.last_moderator_activity_at = now
    record_event(
        session,
        now,
        "action.issued",
        actor=action.issued_by,
        case_id=case.id,
        person_id=subject.id,
        action=action.ref,
        step=chosen.value,
        next_step=due.value,
        skipped=chosen_index > due_index,
        severity=case.severity,
    )
    if chosen is Step.BAN and policy.ban_needs_second_moderator:
        _ask_for_approval(desk, session, case, action, subject, now)
        return (
            f"{action.ref}: ban of {subject.email} proposed; it takes effect when another "
            "moderator sends /approve (or /reject)"
        )
    return put_into_force(desk, session, case, action, now)


def _ask_for_approval(
    desk: Desk, session: Session, case: Case, action: Action, subject: Person, now: datetime
) -> None:
    context = {
        "ref": case.ref,
        "action": action.ref,
        "subject": subject.email,
        "issued_by": action.issued_by,
        "rule": action.rule,
        "facts": action.facts,
    }
    others = [a for a in desk.moderators.addresses if a.lower() != action.issued_by]
    desk.tell_moderators(session, "moderator/ban-pending", case.id, context, now, recipients=others)


def approve_ban(desk: Desk, session: Session, case: Case, moderator: str, now: datetime) -> str:
    """/approve by a second moderator: the pending ban takes effect."""
    action = _pending_ban(session, case)
    approver = moderator.strip().lower()
    if approver == action.issued_by:
        raise EnforcementError(
            f"{action.ref} was proposed by you; a ban needs a second moderator's /approve"
        )
    action.decided_by = approver
    action.decided_at = now
    record_event(
        session, now, "action.approved", actor=approver, case_id=case.id,
        person_id=action.person_id, action=action.ref,
    )  # fmt: skip
    return put_into_force(desk, session, case, action, now)


def reject_ban(
    desk: Desk, session: Session, case: Case, moderator: str, text: str, now: datetime
) -> str:
    """/reject: the pending ban does not take effect (the proposer may withdraw their own)."""
    action = _pending_ban(session, case)
    if not text.strip():
        raise EnforcementError("/reject needs a reason: /reject TEXT")
    action.status = ActionStatus.REJECTED
    action.decided_by = moderator.strip().lower()
    action.decided_at = now
    action.ended_at = now
    action.ended_by = action.decided_by
    action.end_reason = text.strip()
    record_event(
        session, now, "action.rejected", actor=action.decided_by, case_id=case.id,
        person_id=action.person_id, action=action.ref, reason=text.strip(),
    )  # fmt: skip
    return f"{action.ref}: ban rejected; it never took effect and nobody was told"


def _pending_ban(session: Session, case: Case) -> Action:
    action = session.scalars(
        select(Action)
        .where(Action.case_id == case.id, Action.status == ActionStatus.PENDING)
        .with_for_update()
    ).first()
    if action is None:
        raise EnforcementError(f"{case.ref} has no ban waiting for approval")
    return action


def put_into_force(desk: Desk, session: Session, case: Case, action: Action, now: datetime) -> str:
    """The action takes effect now: its clocks start, restrictions begin, people are told."""
    policy = desk.policy
    subject = action.person
    action.status = ActionStatus.ACTIVE
    action.effective_at = now
    action.appeal_until = policy.appeal_window.after(now)
    collateral: list[Restriction] = []
    restriction: Restriction | None = None
    if action.kind is Step.WARNING:
        action.counts_until = policy.warning_counts_for.after(now)
    elif action.kind is Step.STRIKE:
        action.counts_until = policy.strike_counts_for.after(now)
        until = policy.suspension.after(now)
        restriction = _restrict(action, subject.id, RestrictionKind.SUSPENSION, now, until, desk)
        collateral = _program_restrictions(session, case, action, now, until, desk)
    else:
        action.counts_until = None  # a ban is permanent
        restriction = _restrict(action, subject.id, RestrictionKind.BAN, now, None, desk)
    session.add_all([r for r in (restriction, *collateral) if r is not None])
    session.flush()
    record_event(
        session,
        now,
        "action.effective",
        case_id=case.id,
        person_id=subject.id,
        action=action.ref,
        step=action.kind.value,
        counts_until=action.counts_until.isoformat() if action.counts_until else None,
        restricted_until=restriction.until.isoformat()
        if restriction and restriction.until
        else None,
        program_restrictions=[r.person.email for r in collateral],
    )
    _notify_subject(desk, session, case, action, restriction, now)
    for member_restriction in collateral:
        _notify_member(desk, session, case, action, member_restriction, now)
    send_reporter_outcome(desk, session, case, True, now)
    extra = f"; program restrictions for {len(collateral)} member(s)" if collateral else ""
    until_words = (
        f", suspended until {restriction.until:%Y-%m-%d %H:%M} UTC"
        if restriction and restriction.until
        else ""
    )
    return f"{action.ref}: {action.kind.value} of {subject.email} in effect{until_words}{extra}"


def _restrict(
    action: Action,
    person_id: int,
    kind: RestrictionKind,
    now: datetime,
    until: datetime | None,
    desk: Desk,
    program_id: int | None = None,
) -> Restriction:
    features = (
        "all account and mentorship access"
        if kind is RestrictionKind.BAN
        else ", ".join(desk.policy.suspension_disables)
    )
    return Restriction(
        action_id=action.id,
        case_id=action.case_id,
        person_id=person_id,
        scope=RestrictionScope.PROGRAM if program_id else RestrictionScope.ACCOUNT,
        program_id=program_id,
        kind=kind,
        status=RestrictionStatus.ACTIVE,
        features=features,
        since=now,
        until=until,
    )


def _program_restrictions(
    session: Session, case: Case, action: Action, now: datetime, until: datetime, desk: Desk
) -> list[Restriction]:
    """Policy: every mentor and support staff member of the program in violation loses its
    features for the suspension. The subject is left out: their account suspension already
    covers every program, and a program restriction is never a strike."""
    if case.program_id is None:
        return []
    members = session.scalars(
        select(ProgramMember)
        .where(ProgramMember.program_id == case.program_id)
        .where(ProgramMember.person_id != action.person_id)
        .order_by(ProgramMember.id)
    )
    return [
        _restrict(
            action,
            member.person_id,
            RestrictionKind.PROGRAM_RESTRICTION,
            now,
            until,
            desk,
            program_id=case.program_id,
        )
        for member in members
    ]


def sanction_facts(desk: Desk, case: Case, action: Action) -> SanctionFacts:
    rule = find_rule(action.rule) or case_rule(case)
    return SanctionFacts(
        ref=case.ref,
        action_ref=action.ref,
        rule=rule,
        facts=action.facts,
        detection=case.detection,
        appeal_until=action.appeal_until,
        resources_url=desk.desk.resources_url,
    )


def _notify_subject(
    desk: Desk,
    session: Session,
    case: Case,
    action: Action,
    restriction: Restriction | None,
    now: datetime,
) -> None:
    policy = desk.policy
    subject = action.person
    standing = standing_of(session, policy, subject.id, now)
    elements = common_elements(sanction_facts(desk, case, action))
    if action.kind is Step.WARNING:
        elements[Element.DECISION] = (
            "Decision: we are giving you a warning about a violation of our Trust and Safety "
            "policy. No features are disabled."
        )
        elements[Element.SCOPE] = "Scope: your account; a warning disables no features."
        elements[Element.DURATION] = (
            f"How long: this warning counts on your record for "
            f"{policy.warning_counts_for.describe()}, until {when(action.counts_until)}."
        )
    elif action.kind is Step.STRIKE:
        assert restriction is not None
        elements[Element.DECISION] = (
            "Decision: we are giving you a strike, and your account is suspended."
        )
        elements[Element.SCOPE] = (
            f"Scope: your account, in every program. These features are disabled: "
            f"{restriction.features}."
        )
        elements[Element.DURATION] = (
            length_words(policy.suspension, now, restriction.until)
            + f" The strike counts on your record for {policy.strike_counts_for.describe()},"
            f" until {when(action.counts_until)}."
        )
    else:
        elements[Element.DECISION] = (
            "Decision: your account and your access to mentorship are permanently banned "
            "from the eCareerMentor platform."
        )
        elements[Element.SCOPE] = "Scope: your whole account and all access to mentorship."
        elements[Element.DURATION] = length_words(None, now, None)
    elements[Element.STANDING] = describe_standing(policy, standing)
    queue_notice(
        desk,
        session,
        Notice(
            template=f"subject/{action.kind.value}",
            recipient=subject.email,
            party=Party.SUBJECT,
            case_id=case.id,
            context={"ref": case.ref, "name": subject.name, "elements": elements},
            elements=elements,
        ),
        now,
    )


def _notify_member(
    desk: Desk,
    session: Session,
    case: Case,
    action: Action,
    restriction: Restriction,
    now: datetime,
) -> None:
    policy = desk.policy
    member = restriction.person
    program = restriction.program
    assert program is not None
    label = f"{program.code}" + (f" ({program.title})" if program.title else "")
    standing = standing_of(session, policy, member.id, now)
    elements = common_elements(sanction_facts(desk, case, action))
    elements[Element.DECISION] = (
        f"Decision: a policy violation was found in program {label}, so its features are "
        "disabled for all of its mentors and support staff, including you. This is a program "
        "restriction, not a strike: it does not count against your own standing."
    )
    elements[Element.SCOPE] = (
        f"Scope: program {program.code} only; your account and your other programs are not "
        f"affected. These features are disabled in the program: {restriction.features}."
    )
    elements[Element.DURATION] = length_words(policy.suspension, now, restriction.until)
    # The facts text is written to the sanctioned person; members learn the finding, not the
    # details of an action on someone else's account.
    elements[Element.FACTS] = (
        f"The facts we relied on: our team found a violation of the rule below in program "
        f"{program.code} and issued a strike ({action.ref}) on {when(action.effective_at)}. "
        "To protect everyone's privacy we do not share the details of an action on someone "
        "else's account."
    )
    elements[Element.APPEAL] = (
        f"To give context or to ask for a review of this restriction, reply to this email by "
        f"{when(action.appeal_until)}. A moderator will read every reply."
    )
    elements[Element.STANDING] = describe_standing(policy, standing)
    queue_notice(
        desk,
        session,
        Notice(
            template="member/program-restriction",
            recipient=member.email,
            party=Party.MEMBER,
            case_id=case.id,
            context={
                "ref": case.ref,
                "name": member.name,
                "program": program.code,
                "elements": elements,
            },
            elements=elements,
        ),
        now,
    )


def send_reporter_outcome(
    desk: Desk, session: Session, case: Case, action_taken: bool, now: datetime
) -> bool:
    """Tell the reporter the outcome once per case: action taken or no violation, no details."""
    reporter = case.reporter
    if reporter is None or reporter.id == case.subject_id:
        return False
    if case.detection is Detection.PROACTIVE:
        return False  # a case the team found itself (proactive monitoring) has no reporter to tell
    session.flush()
    already = session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.case_id == case.id, OutboxMessage.template == "reporter/outcome")
        .limit(1)
    ).first()
    if already is not None:
        return False
    queue_notice(
        desk,
        session,
        Notice(
            template="reporter/outcome",
            recipient=reporter.email,
            party=Party.REPORTER,
            case_id=case.id,
            context={"ref": case.ref, "name": reporter.name, "action_taken": action_taken},
        ),
        now,
    )
    record_event(
        session, now, "reporter.outcome", case_id=case.id, person_id=reporter.id,
        outcome="action-taken" if action_taken else "no-violation",
    )  # fmt: skip
    return True
