"""What the domain asks to be emailed, and the port through which it is queued."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.orm import Session

from casework.models import OutboxMessage, Party


class AutoSubmitted(StrEnum):
    """RFC 3834 Auto-Submitted values the desk puts on its own mail."""

    NO = "no"
    AUTO_REPLIED = "auto-replied"
    AUTO_GENERATED = "auto-generated"


@dataclass(frozen=True)
class Notice:
    """One email to one recipient, named by template, with the facts the template needs."""

    template: str
    recipient: str
    party: Party
    case_id: int | None
    context: Mapping[str, Any] = field(default_factory=dict)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: AutoSubmitted = AutoSubmitted.AUTO_GENERATED


class NoticeSink(Protocol):
    """Queues a notice in the outbox inside the caller's transaction."""

    def queue(self, session: Session, notice: Notice, now: datetime) -> OutboxMessage: ...
