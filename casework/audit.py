"""Writing to the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from casework.held_rows import insert_rows
from casework.models import AuditEvent

SYSTEM = "system"
# Written without the ORM: an event is never changed, and a plain INSERT costs about a third of
# a unit-of-work flush on the intake's hot path. A group of messages holds its events and writes
# them together (casework.held_rows).
_INSERT = insert(cast(Table, AuditEvent.__table__))


def record_event(
    session: Session,
    now: datetime,
    kind: str,
    *,
    actor: str = SYSTEM,
    case_id: int | None = None,
    person_id: int | None = None,
    **detail: Any,
) -> None:
    """Append one event (held with others while the session holds rows); never changed."""
    row = {
        "at": now,
        "actor": actor,
        "kind": kind,
        "case_id": case_id,
        "person_id": person_id,
        "detail": detail,
    }
    insert_rows(session, _INSERT, [row])
