"""Writing to the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from casework.models import AuditEvent

SYSTEM = "system"


def record_event(
    session: Session,
    now: datetime,
    kind: str,
    *,
    actor: str = SYSTEM,
    case_id: int | None = None,
    person_id: int | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append one event; the row is never changed afterwards."""
    event = AuditEvent(
        at=now, actor=actor, kind=kind, case_id=case_id, person_id=person_id, detail=detail
    )
    session.add(event)
    return event
