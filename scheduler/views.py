"""Read-only views of cases, the outbox and quarantine, as dicts for tables and JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.cases import get_case
from casework.models import (
    AuditEvent,
    Case,
    CaseStatus,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
    QuarantineEntry,
)
from scheduler.enforcement_views import case_actions


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def case_row(case: Case) -> dict[str, Any]:
    return {
        "ref": case.ref,
        "kind": case.kind.value,
        "status": case.status.value,
        "category": case.category,
        "reporter": case.reporter.email if case.reporter else None,
        "subject": case.subject.email if case.subject else None,
        "program": case.program.code if case.program else None,
        "created_at": iso(case.created_at),
        "assignee": case.assignee,
        "suggested_category": case.suggested_category,
        "title": case.title,
    }


def list_cases(session: Session, status: str | None = None) -> list[dict[str, Any]]:
    query = select(Case).order_by(Case.id)
    if status:
        query = query.where(Case.status == CaseStatus(status))
    return [case_row(case) for case in session.scalars(query)]


def show_case(session: Session, ref: str) -> dict[str, Any]:
    case = get_case(session, ref)
    messages: list[dict[str, Any]] = []
    for inbound in session.scalars(
        select(InboundMessage).where(InboundMessage.case_id == case.id).order_by(InboundMessage.id)
    ):
        messages.append(
            {
                "direction": "in",
                "from": inbound.from_address,
                "to": inbound.to_addresses,
                "subject": inbound.subject,
                "date": iso(inbound.date or inbound.received_at),
                "party": inbound.party.value if inbound.party else None,
                "text": inbound.body_text,
                "sha256": inbound.sha256,
            }
        )
    for outbound in session.scalars(
        select(OutboxMessage).where(OutboxMessage.case_id == case.id).order_by(OutboxMessage.id)
    ):
        messages.append(
            {
                "direction": "out",
                "from": None,
                "to": outbound.recipient,
                "subject": outbound.subject,
                "date": iso(outbound.sent_at or outbound.created_at),
                "party": outbound.party.value if outbound.party else None,
                "template": outbound.template,
                "status": outbound.status.value,
            }
        )
    messages.sort(key=lambda m: m["date"] or "")
    events = [
        {"at": iso(event.at), "actor": event.actor, "kind": event.kind, "detail": event.detail}
        for event in session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.id)
        )
    ]
    actions = case_actions(session, case)
    return {**case_row(case), "messages": messages, "events": events, "actions": actions}


def list_outbox(session: Session, status: str | None = None) -> list[dict[str, Any]]:
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if status:
        query = query.where(OutboxMessage.status == OutboxStatus(status))
    return [
        {
            "id": row.id,
            "case": f"TS-{row.case_id}" if row.case_id else None,
            "to": row.recipient,
            "template": row.template,
            "status": row.status.value,
            "attempts": row.attempts,
            "next_attempt_at": iso(row.next_attempt_at),
            "sent_at": iso(row.sent_at),
            "last_error": row.last_error,
            "subject": row.subject,
        }
        for row in session.scalars(query)
    ]


def list_quarantine(session: Session) -> list[dict[str, Any]]:
    return [
        quarantine_row(entry)
        for entry in session.scalars(select(QuarantineEntry).order_by(QuarantineEntry.id))
    ]


def quarantine_row(entry: QuarantineEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "received_at": iso(entry.received_at),
        "source": entry.source,
        "sha256": entry.sha256,
        "size": len(entry.raw),
        "reason": entry.reason,
        "status": entry.status.value,
        "replayed_at": iso(entry.replayed_at),
    }
