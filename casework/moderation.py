"""A moderator's reply: who may command, applying a block all or nothing, the transcript."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework import enforcement
from casework.audit import record_event
from casework.cases import case_summary, history_of
from casework.commands import (
    SANCTIONS,
    Block,
    Draft,
    Lookups,
    Planned,
    Problem,
    Verb,
    cheat_sheet,
    read_block,
    validate_block,
)
from casework.desk import Desk
from casework.discretion import refusal_for
from casework.held_rows import savepoint
from casework.models import (
    AuditEvent,
    Case,
    CaseStatus,
    InboundMessage,
    OutboxMessage,
    Party,
    Person,
    Program,
)
from casework.notices import AutoSubmitted, Notice
from casework.people import ensure_person
from casework.routing import MatchedBy, Route
from casework.rules import RULES, find_rule

OUTCOME_NO_VIOLATION = "no-violation"
REPLAY_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class ModeratorReply:
    """What the intake side read from the message: the typed part and how it was authenticated."""

    typed: str
    quoted_lines: int
    has_signature: bool
    authenticated: bool
    auth_reason: str


@dataclass(frozen=True)
class LineResult:
    written: str
    status: str  # "ok", "error", "valid" (checked but not applied) or "not applied"
    message: str


class BlockRefused(Exception):
    """Enforcement refused a command while applying: everything in the block is undone."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def refusal_reason(desk: Desk, route: Route, sender: str, reply: ModeratorReply) -> str | None:
    """Why this message may not command the desk, or None when it may."""
    if not desk.moderators.is_moderator(sender):
        return f"{sender} is not a moderator"
    if route.matched_by not in (MatchedBy.TOKEN, MatchedBy.THREAD):
        return "the reply did not come back through a reply address issued to this moderator"
    if route.recipient.lower() != sender.lower():
        return "the reply address was issued to another moderator"
    if desk.moderators.require_authenticated and not reply.authenticated:
        return f"the sender was not authenticated: {reply.auth_reason}"
    return None


def refuse_commands(
    desk: Desk,
    session: Session,
    case: Case,
    inbound: InboundMessage,
    reason: str,
    now: datetime,
) -> None:
    """Nothing is applied; the attempt is audited and the real moderator address is told."""
    inbound.case_id = case.id
    inbound.party = Party.MODERATOR
    record_event(
        session,
        now,
        "commands.refused",
        actor=inbound.from_address,
        case_id=case.id,
        message=inbound.id,
        message_id=inbound.message_id,
        reason=reason,
    )
    if desk.moderators.is_moderator(inbound.from_address):
        desk.notices.queue(
            session,
            Notice(
                template="moderator/refused",
                recipient=inbound.from_address,
                party=Party.MODERATOR,
                case_id=case.id,
                context={
                    "ref": case.ref,
                    "reason": reason,
                    "message_id": inbound.message_id or "(none)",
                    "date": inbound.date or inbound.received_at,
                    "subject_line": inbound.subject,
                },
                auto_submitted=AutoSubmitted.AUTO_REPLIED,
            ),
            now,
        )


def handle_commands(
    desk: Desk,
    session: Session,
    case: Case,
    inbound: InboundMessage,
    reply: ModeratorReply,
    now: datetime,
) -> bool:
    """Validate the whole block, apply it in one savepoint, and always send a transcript."""
    moderator = inbound.from_address.lower()
    inbound.case_id = case.id
    inbound.party = Party.MODERATOR
    block = read_block(reply.typed)
    answer = _Answer(desk, session, case, inbound, block, reply, now)
    if not block.commands:
        return _keep_note(answer)
    earlier = _earlier_application(session, case, moderator, block, now)
    if earlier is not None:
        return answer.conclude(
            "commands.replayed",
            [LineResult(c.written, "not applied", "already applied") for c in block.commands],
            f"Nothing applied: the same commands were already applied from your message "
            f"{earlier.detail.get('message_id') or ''} of {earlier.at:%d %B %Y, %H:%M UTC}.",
            applied=False,
            earlier=earlier.id,
        )
    draft = Draft(
        status=case.status,
        has_reporter=case.reporter_id is not None,
        has_subject=case.subject_id is not None,
        category=case.category,
        ref=case.ref,
    )
    checked, valid = validate_block(block, draft, _lookups(desk, session, case, moderator))
    if not valid:
        errors = sum(1 for item in checked if isinstance(item, Problem))
        return answer.conclude(
            "commands.rejected",
            [
                LineResult(item.command.written, "error", item.error)
                if isinstance(item, Problem)
                else LineResult(item.command.written, "valid", "valid, but not applied")
                for item in checked
            ],
            f"Nothing applied: {errors} error(s); fix them and send the block again.",
            applied=False,
        )
    planned = [item for item in checked if isinstance(item, Planned)]
    try:
        with savepoint(session):
            messages = _apply_all(desk, session, case, inbound, moderator, planned, now)
    except BlockRefused as refused:
        session.expire_all()
        return answer.conclude(
            "commands.rejected",
            [
                LineResult(item.command.written, "error", refused.message)
                if index == refused.index
                else LineResult(item.command.written, "not applied", "not applied")
                for index, item in enumerate(planned)
            ],
            "Nothing applied: the enforcement service refused a command.",
            applied=False,
        )
    return answer.conclude(
        "commands.applied",
        [
            LineResult(item.command.written, "ok", message)
            for item, message in zip(planned, messages, strict=True)
        ],
        f"Applied: {len(planned)} command(s).",
        applied=True,
        message_id=inbound.message_id,
        fingerprint=block.fingerprint,
    )


@dataclass(frozen=True)
class _Answer:
    """Everything needed to close a handled reply: the audit event and the transcript."""

    desk: Desk
    session: Session
    case: Case
    inbound: InboundMessage
    block: Block
    reply: ModeratorReply
    now: datetime

    def conclude(
        self,
        kind: str,
        lines: list[LineResult],
        headline: str,
        *,
        applied: bool,
        answer: bool = True,
        **detail: Any,
    ) -> bool:
        record_event(
            self.session,
            self.now,
            kind,
            actor=self.inbound.from_address.lower(),
            case_id=self.case.id,
            message=self.inbound.id,
            lines=[_line_detail(line) for line in lines],
            **detail,
        )
        self.inbound.reason = f"{self.inbound.reason}; {headline}"[:200]
        if not answer:
            return applied
        _transcript(
            self.desk,
            self.session,
            self.case,
            self.inbound,
            self.block,
            self.reply,
            lines,
            self.now,
            headline=headline,
            applied=applied,
        )
        return applied


def _line_detail(line: LineResult) -> dict[str, str]:
    return {"line": line.written, "status": line.status, "message": line.message}


def _earlier_application(
    session: Session, case: Case, moderator: str, block: Block, now: datetime
) -> AuditEvent | None:
    """This very block, applied by this moderator on this case within the replay window.

    A client that sends a message twice (or a moderator who presses "send again") gives the
    copy a new Message-ID, so the pipeline's Message-ID dedupe cannot see it; the same commands
    with the same words, from the same moderator on the same case, shortly after, are a copy.
    """
    if all(command.verb == Verb.HELP for command in block.commands):
        return None
    recent = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case.id)
        .where(AuditEvent.actor == moderator)
        .where(AuditEvent.kind == "commands.applied")
        .where(AuditEvent.at >= now - REPLAY_WINDOW)
        .order_by(AuditEvent.id.desc())
    )
    for event in recent:
        if event.detail.get("fingerprint") == block.fingerprint:
            return event
    return None


def _lookups(desk: Desk, session: Session, case: Case, moderator: str) -> Lookups:
    def program_exists(code: str) -> bool:
        return session.scalars(select(Program.id).where(Program.code == code)).first() is not None

    def merge_target_error(target_id: int) -> str | None:
        if target_id == case.id:
            return "a case cannot be merged into itself"
        target = session.get(Case, target_id)
        if target is None:
            return f"no case TS-{target_id}"
        if target.status is not CaseStatus.OPEN:
            return f"TS-{target_id} is {target.status}; merge only into an open case"
        return None

    forbidden = {desk.desk.address.lower()}
    if case.reporter is not None:
        forbidden.add(case.reporter.email)
    return Lookups(
        moderator=moderator,
        is_moderator=desk.moderators.is_moderator,
        program_exists=program_exists,
        merge_target_error=merge_target_error,
        forbidden_subjects=frozenset(forbidden),
    )


# --- applying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applying:
    desk: Desk
    session: Session
    case: Case
    inbound: InboundMessage
    moderator: str
    now: datetime

    def event(self, kind: str, **detail: Any) -> None:
        record_event(
            self.session,
            self.now,
            kind,
            actor=self.moderator,
            case_id=self.case.id,
            message=self.inbound.id,
            **detail,
        )


def _apply_all(
    desk: Desk,
    session: Session,
    case: Case,
    inbound: InboundMessage,
    moderator: str,
    planned: list[Planned],
    now: datetime,
) -> list[str]:
    ctx = Applying(desk, session, case, inbound, moderator, now)
    messages: list[str] = []
    for index, item in enumerate(planned):
        try:
            messages.append(_APPLY[item.verb](ctx, item))
        except enforcement.EnforcementError as error:
            raise BlockRefused(index, str(error)) from error
        session.flush()
    case.updated_at = now
    return messages


def _assign(ctx: Applying, item: Planned) -> str:
    before = ctx.case.assignee
    ctx.case.assignee = item.values["assignee"]
    ctx.event("case.assigned", assignee=ctx.case.assignee, before=before)
    if ctx.case.assignee != ctx.moderator:
        ctx.desk.notices.queue(
            ctx.session,
            Notice(
                template="moderator/assigned",
                recipient=ctx.case.assignee,
                party=Party.MODERATOR,
                case_id=ctx.case.id,
                context={
                    "ref": ctx.case.ref,
                    "by": ctx.moderator,
                    "case": case_summary(ctx.session, ctx.case),
                },
            ),
            ctx.now,
        )
        return f"assigned to {ctx.case.assignee} (they were told)"
    return f"assigned to {ctx.case.assignee}"


def _subject(ctx: Applying, item: Planned) -> str:
    person = ensure_person(ctx.session, item.values["email"], ctx.now)
    before = ctx.case.subject.email if ctx.case.subject else None
    ctx.case.subject_id = person.id
    ctx.case.subject = person
    ctx.event("case.subject", person_id=person.id, subject=person.email, before=before)
    history = history_of(ctx.session, person.id)
    others = _open_cases_about(ctx.session, person.id, ctx.case.id)
    extra = f"; other open cases about them: {', '.join(others)}" if others else ""
    return (
        f"reported person is {person.email} "
        f"({history['as_subject'] - 1} earlier case(s) about them){extra}"
    )


def _program(ctx: Applying, item: Planned) -> str:
    program = ctx.session.scalars(select(Program).where(Program.code == item.values["code"])).one()
    ctx.case.program_id = program.id
    ctx.case.program = program
    ctx.event("case.program", program=program.code)
    return f"program {program.code}" + (f" ({program.title})" if program.title else "")


def _category(ctx: Applying, item: Planned) -> str:
    rule = find_rule(item.values["code"])
    assert rule is not None  # validated
    ctx.case.category = rule.code
    ctx.event("case.category", category=rule.code)
    return f"rule {rule.code}: {rule.title}"


def _severity(ctx: Applying, item: Planned) -> str:
    ctx.case.severity = item.values["severity"]
    ctx.event("case.severity", severity=ctx.case.severity)
    return f"severity {ctx.case.severity}"


def _note(ctx: Applying, item: Planned) -> str:
    ctx.event("case.note", text=item.values["text"])
    return "internal note kept"


def _reply(ctx: Applying, item: Planned) -> str:
    reporter = ctx.case.reporter
    assert reporter is not None  # validated
    _email_party(ctx, reporter, Party.REPORTER, "reporter/reply", item.values["text"])
    ctx.event("case.reply", recipient=reporter.email, text=item.values["text"])
    return f"emailed the reporter ({reporter.email})"


def _email_party(ctx: Applying, person: Person, party: Party, template: str, text: str) -> None:
    """The moderator's own words to one party, on that party's thread of the case."""
    ctx.desk.notices.queue(
        ctx.session,
        Notice(
            template=template,
            recipient=person.email,
            party=party,
            case_id=ctx.case.id,
            context={"ref": ctx.case.ref, "name": person.name, "text": text},
            auto_submitted=AutoSubmitted.NO,
            **_thread_of(ctx, person.email),
        ),
        ctx.now,
    )
    ctx.case.last_moderator_activity_at = ctx.now


def _thread_of(ctx: Applying, recipient: str) -> dict[str, Any]:
    """In-Reply-To and References to the last mail this recipient got on the case (one thread)."""
    last = ctx.session.scalars(
        select(OutboxMessage.message_id)
        .where(OutboxMessage.case_id == ctx.case.id)
        .where(OutboxMessage.recipient == recipient)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return {}
    return {"in_reply_to": last, "references": (last,)}


def _message(ctx: Applying, item: Planned) -> str:
    subject = ctx.case.subject
    assert subject is not None  # validated
    named = refusal_for(ctx.case, item.values["text"], "the message would")
    if named is not None:
        raise enforcement.EnforcementError(named)
    # Never the reporter, never the report: only the moderator's own words.
    _email_party(ctx, subject, Party.SUBJECT, "subject/message", item.values["text"])
    ctx.event("case.message", recipient=subject.email, text=item.values["text"])
    return f"emailed the reported person ({subject.email})"


def _close(ctx: Applying, item: Planned) -> str:
    reason = item.values["reason"]
    ctx.case.status = CaseStatus.CLOSED
    ctx.case.resolution = reason
    ctx.case.closed_at = ctx.now
    ctx.case.last_moderator_activity_at = ctx.now
    ctx.event("case.closed", resolution=reason, text=item.values["text"])
    told = ""
    if reason == OUTCOME_NO_VIOLATION and enforcement.send_reporter_outcome(
        ctx.desk, ctx.session, ctx.case, False, ctx.now
    ):
        told = "; the reporter was told: no violation found"
    return f"closed ({reason}){told}"


def _reopen(ctx: Applying, item: Planned) -> str:
    ctx.case.status = CaseStatus.OPEN
    ctx.case.resolution = None
    ctx.case.closed_at = None
    ctx.event("case.reopened")
    return "reopened"


def _merge(ctx: Applying, item: Planned) -> str:
    target = ctx.session.get(Case, int(item.values["target"]))
    assert target is not None  # validated
    ctx.case.status = CaseStatus.MERGED
    ctx.case.merged_into_id = target.id
    ctx.case.closed_at = ctx.now
    ctx.event("case.merged", into=target.ref)
    record_event(
        ctx.session,
        ctx.now,
        "case.merged-in",
        actor=ctx.moderator,
        case_id=target.id,
        source=ctx.case.ref,
    )
    target.updated_at = ctx.now
    return f"merged into {target.ref}; reply on {target.ref} from now on"


def _help(ctx: Applying, item: Planned) -> str:
    return "the command list is below"


def _sanction(ctx: Applying, item: Planned) -> str:
    step = SANCTIONS[item.verb]
    ctx.case.last_moderator_activity_at = ctx.now
    return enforcement.apply_sanction(
        ctx.desk, ctx.session, ctx.case, ctx.moderator, step, item.values["facts"], ctx.now
    )


def _approve(ctx: Applying, item: Planned) -> str:
    return enforcement.approve_ban(ctx.desk, ctx.session, ctx.case, ctx.moderator, ctx.now)


def _reject(ctx: Applying, item: Planned) -> str:
    return enforcement.reject_ban(
        ctx.desk, ctx.session, ctx.case, ctx.moderator, item.values["text"], ctx.now
    )


def _uphold(ctx: Applying, item: Planned) -> str:
    return enforcement.decide_appeal(
        ctx.desk, ctx.session, ctx.case, ctx.moderator, False, item.values["text"], ctx.now
    )


def _overturn(ctx: Applying, item: Planned) -> str:
    return enforcement.decide_appeal(
        ctx.desk, ctx.session, ctx.case, ctx.moderator, True, item.values["text"], ctx.now
    )


def _revoke(ctx: Applying, item: Planned) -> str:
    return enforcement.revoke_action(
        ctx.desk,
        ctx.session,
        ctx.case,
        ctx.moderator,
        item.values["action"],
        item.values["text"],
        ctx.now,
    )


_APPLY: dict[Verb, Callable[[Applying, Planned], str]] = {
    Verb.ASSIGN: _assign,
    Verb.SUBJECT: _subject,
    Verb.PROGRAM: _program,
    Verb.CATEGORY: _category,
    Verb.SEVERITY: _severity,
    Verb.NOTE: _note,
    Verb.REPLY: _reply,
    Verb.MESSAGE: _message,
    Verb.CLOSE: _close,
    Verb.REOPEN: _reopen,
    Verb.MERGE: _merge,
    Verb.HELP: _help,
    Verb.WARN: _sanction,
    Verb.STRIKE: _sanction,
    Verb.BAN: _sanction,
    Verb.ESCALATE: _sanction,
    Verb.APPROVE: _approve,
    Verb.REJECT: _reject,
    Verb.UPHOLD: _uphold,
    Verb.OVERTURN: _overturn,
    Verb.REVOKE: _revoke,
}


# --- notes and transcripts ------------------------------------------------------------------


def _keep_note(answer: _Answer) -> bool:
    """No command at all: the typed text is an internal note (and the transcript says so).

    A command-less reply to one of our transcripts gets no transcript of its own: that is what
    an unmarked auto-responder in a moderator's mailbox sends, and answering it would loop.
    """
    answer.case.updated_at = answer.now
    loop_safe = not _answers_a_transcript(answer.session, answer.inbound)
    if answer.block.text:
        return answer.conclude(
            "case.note",
            [],
            "No commands found; your text was kept as an internal note.",
            applied=True,
            answer=loop_safe,
            text=answer.block.text,
        )
    return answer.conclude(
        "commands.empty",
        [],
        "No commands and no text found above the quoted message; nothing was done.",
        applied=False,
        answer=loop_safe,
    )


def _answers_a_transcript(session: Session, inbound: InboundMessage) -> bool:
    if not inbound.in_reply_to:
        return False
    template = session.scalars(
        select(OutboxMessage.template).where(OutboxMessage.message_id == inbound.in_reply_to)
    ).first()
    return template == "moderator/transcript"


def _open_cases_about(session: Session, person_id: int, other_than: int) -> list[str]:
    return [
        f"TS-{case_id}"
        for case_id in session.scalars(
            select(Case.id)
            .where(Case.subject_id == person_id)
            .where(Case.status == CaseStatus.OPEN)
            .where(Case.id != other_than)
            .order_by(Case.id)
        )
    ]


def _transcript(
    desk: Desk,
    session: Session,
    case: Case,
    inbound: InboundMessage,
    block: Block,
    reply: ModeratorReply,
    lines: list[LineResult],
    now: datetime,
    *,
    headline: str,
    applied: bool,
) -> None:
    session.flush()
    session.refresh(case)
    ignored: list[str] = []
    if reply.quoted_lines:
        ignored.append(f"{reply.quoted_lines} line(s) of the quoted original message")
    if reply.has_signature:
        ignored.append("your signature")
    wants_help = any(c.verb == Verb.HELP for c in block.commands)
    summary = case_summary(session, case)
    summary["severity"] = case.severity
    summary["resolution"] = case.resolution
    summary["merged_into"] = f"TS-{case.merged_into_id}" if case.merged_into_id else None
    desk.notices.queue(
        session,
        Notice(
            template="moderator/transcript",
            recipient=inbound.from_address,
            party=Party.MODERATOR,
            case_id=case.id,
            context={
                "ref": case.ref,
                "headline": headline,
                "applied": applied,
                "lines": [(line.written, line.status, line.message) for line in lines],
                "unprocessed": list(block.unprocessed),
                "ignored": ignored,
                "case": summary,
                "date": inbound.date or inbound.received_at,
                "help": cheat_sheet() if wants_help else [],
                "rules": [(rule.code, rule.title) for rule in RULES],
            },
            in_reply_to=inbound.message_id,
            references=(inbound.message_id,) if inbound.message_id else (),
            auto_submitted=AutoSubmitted.AUTO_REPLIED,
        ),
        now,
    )
