"""Enforcement services: sanctions on the ladder, ban approval, appeals and revocation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from casework.desk import Desk
from casework.models import Case, InboundMessage
from casework.settings import Step


class EnforcementError(Exception):
    """A sanction command that is not allowed now; the message says why, for the transcript."""


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
    raise NotImplementedError


def approve_ban(desk: Desk, session: Session, case: Case, moderator: str, now: datetime) -> str:
    """/approve by a second moderator: the pending ban takes effect."""
    raise NotImplementedError


def reject_ban(
    desk: Desk, session: Session, case: Case, moderator: str, text: str, now: datetime
) -> str:
    """/reject: the pending ban does not take effect."""
    raise NotImplementedError


def decide_appeal(
    desk: Desk,
    session: Session,
    case: Case,
    moderator: str,
    overturn: bool,
    text: str,
    now: datetime,
) -> str:
    """/uphold TEXT or /overturn TEXT by a moderator other than the one who issued the action."""
    raise NotImplementedError


def revoke_action(
    desk: Desk, session: Session, case: Case, moderator: str, action: str, text: str, now: datetime
) -> str:
    """/revoke ACTION TEXT: correct a mistake; the action stops counting, restrictions lift."""
    raise NotImplementedError


def record_appeal(
    desk: Desk, session: Session, case: Case, inbound: InboundMessage, now: datetime
) -> bool:
    """The reported person replied: True when it was recorded as an appeal of an action."""
    raise NotImplementedError
