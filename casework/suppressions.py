"""Bounces tied to the mail they report on, and addresses suppressed after repeated hard bounces."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.audit import SYSTEM, record_event
from casework.durations import Duration
from casework.models import (
    Bounce,
    BounceKind,
    InboundMessage,
    OutboxHold,
    OutboxMessage,
    Suppression,
)
from casework.tokens import read_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuppressionPolicy:
    """N counted hard bounces suppress an address for `period`."""

    after_bounces: int = 3
    period: Duration = Duration(days=30)


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says: the failed recipients, hard or soft, and traces of the original."""

    recipients: tuple[str, ...] = ()
    status: str = ""  # the first enhanced status code, "5.1.1"; "" when the report gives none
    action: str = ""  # the DSN Action: "failed", "delayed", …
    message_ids: tuple[str, ...] = ()  # every Message-ID the report mentions, ours among them
    case_ids: tuple[int, ...] = ()  # from X-SafetyDesk-Case headers of the returned message
    addresses: tuple[str, ...] = ()  # desk-domain addresses in it (reply tokens among them)

    @property
    def kind(self) -> BounceKind:
        """RFC 3463: class 5 is a permanent failure, 4 transient; no code proves nothing."""
        if self.action in {"delayed", "relayed", "delivered", "expanded"}:
            return BounceKind.SOFT
        if self.status.startswith("5"):
            return BounceKind.HARD
        if self.status.startswith("4"):
            return BounceKind.SOFT
        return BounceKind.UNKNOWN


@dataclass(frozen=True)
class Original:
    """Our outbox message a report returns; `proven` when the report named what only we know.

    A Message-ID of ours or a signed reply token proves it; the X-SafetyDesk-Case header does
    not (anyone can write "TS-1"), so a match by that header ties the report to its case only.
    """

    message: OutboxMessage
    proven: bool


def find_original(
    session: Session, report: BounceReport, *, secret: bytes, desk_address: str
) -> Original | None:
    """Our outbox message the report returns: by Message-ID, reply token, or case header."""
    if report.message_ids:
        row = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.message_id.in_(list(report.message_ids)[:200]))
            .order_by(OutboxMessage.id.desc())
        ).first()
        if row is not None:
            return Original(row, proven=True)
    for address in report.addresses[:50]:
        for recipient in report.recipients[:20]:
            token = read_token(secret, address, desk_address, recipient) if secret else None
            if token is not None:
                row = _latest_to(session, token.case_id, token.recipient)
                if row is not None:
                    return Original(row, proven=True)
    for case_id in report.case_ids[:20]:
        for recipient in report.recipients[:20]:
            row = _latest_to(session, case_id, recipient)
            if row is not None:
                return Original(row, proven=False)
    return None


def _latest_to(session: Session, case_id: int, recipient: str) -> OutboxMessage | None:
    return session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.case_id == case_id)
        .where(OutboxMessage.recipient == recipient)
        .order_by(OutboxMessage.id.desc())
    ).first()


def record_bounce(
    session: Session,
    inbound: InboundMessage,
    report: BounceReport,
    now: datetime,
    *,
    secret: bytes,
    desk_address: str,
    policy: SuppressionPolicy,
) -> Bounce:
    """Keep the bounce, tie it to our message and case, and suppress after N hard bounces.

    Only a hard bounce that names one of our messages sent to that very address counts:
    anybody can forge a bounce, nobody else knows our Message-IDs or reply tokens.
    """
    found = find_original(session, report, secret=secret, desk_address=desk_address)
    original = found.message if found is not None else None
    recipient = original.recipient if original is not None else next(iter(report.recipients), "")
    counted = (
        report.kind is BounceKind.HARD
        and found is not None
        and found.proven
        and (not report.recipients or found.message.recipient in report.recipients)
    )
    bounce = Bounce(
        received_at=now,
        inbound_id=inbound.id,
        outbox_id=original.id if original is not None else None,
        case_id=original.case_id if original is not None else None,
        recipient=recipient[:320],
        status=report.status[:16],
        action=report.action[:32],
        kind=report.kind,
        counted=counted,
    )
    session.add(bounce)
    if original is not None:
        inbound.case_id = original.case_id
        original.last_error = f"bounced ({report.kind.value} {report.status})".strip()[:2000]
    session.flush()
    record_event(
        session,
        now,
        "delivery.bounced",
        case_id=bounce.case_id,
        message=inbound.id,
        outbox=bounce.outbox_id,
        recipient=recipient,
        status=bounce.status,
        bounce_kind=bounce.kind.value,
        counted=counted,
    )
    if counted:
        suppress_if_due(session, recipient, now, policy, case_id=bounce.case_id)
    return bounce


def suppress_if_due(
    session: Session,
    address: str,
    now: datetime,
    policy: SuppressionPolicy,
    *,
    case_id: int | None = None,
) -> Suppression | None:
    """Suppress `address` when its counted hard bounces since the last reset reach the limit."""
    if policy.after_bounces <= 0 or active_suppression(session, address, now) is not None:
        return None
    since = last_reset(session, address)
    # Distinct messages: a server that reports the same failure twice is one bounce.
    query = (
        select(func.count(func.distinct(Bounce.outbox_id)))
        .select_from(Bounce)
        .where(Bounce.recipient == address)
        .where(Bounce.counted.is_(True))
    )
    if since is not None:
        query = query.where(Bounce.received_at > since)
    count = int(session.scalar(query) or 0)
    if count < policy.after_bounces:
        return None
    suppression = Suppression(
        address=address,
        reason=f"{count} hard bounces",
        bounces=count,
        since=now,
        until=policy.period.after(now),
    )
    session.add(suppression)
    look_again_at_held_mail(session, address, now)  # held by a cap until now: say suppressed
    record_event(
        session,
        now,
        "address.suppressed",
        case_id=case_id,
        address=address,
        bounces=count,
        until=suppression.until.isoformat(),
    )
    log.warning("suppressed %s until %s after %s hard bounces", address, suppression.until, count)
    return suppression


def last_reset(session: Session, address: str) -> datetime | None:
    """When the bounce count of `address` last started again (a suppression began or ended)."""
    latest = session.scalars(
        select(Suppression).where(Suppression.address == address).order_by(Suppression.id.desc())
    ).first()
    if latest is None:
        return None
    return latest.cleared_at or latest.since


def active_suppression(session: Session, address: str, now: datetime) -> Suppression | None:
    return session.scalars(
        select(Suppression)
        .where(Suppression.address == address.lower())
        .where(Suppression.cleared_at.is_(None))
        .where(Suppression.until > now)
        .order_by(Suppression.id.desc())
    ).first()


def list_suppressions(session: Session, now: datetime, *, everything: bool) -> list[Suppression]:
    """Active suppressions, or every one ever made with `everything`."""
    query = select(Suppression).order_by(Suppression.id)
    if not everything:
        query = query.where(Suppression.cleared_at.is_(None)).where(Suppression.until > now)
    return list(session.scalars(query))


def clear_suppression(session: Session, address: str, now: datetime, *, actor: str = SYSTEM) -> int:
    """End the active suppression of `address` now; its bounce count starts again from zero."""
    cleared = 0
    for row in session.scalars(
        select(Suppression)
        .where(Suppression.address == address.strip().lower())
        .where(Suppression.cleared_at.is_(None))
        .where(Suppression.until > now)
    ):
        row.cleared_at = now
        row.cleared_by = actor
        cleared += 1
        record_event(session, now, "address.unsuppressed", actor=actor, address=row.address)
    if cleared:  # its held mail may go at the next delivery run, not when the suppression ends
        look_again_at_held_mail(session, address, now)
    return cleared


def look_again_at_held_mail(session: Session, address: str, now: datetime) -> None:
    """Have the next delivery run look at the mail held for `address` again: its reason to
    wait (a cap, a suppression) has just changed, before the time the holds were given."""
    holds = select(OutboxHold).join(OutboxMessage, OutboxMessage.id == OutboxHold.outbox_id)
    for hold in session.scalars(
        holds.where(OutboxMessage.recipient == address.strip().lower()).where(
            OutboxHold.released_at.is_(None)
        )
    ):
        hold.recheck_at = now


def record_complaint(
    session: Session,
    inbound: InboundMessage,
    report: BounceReport,
    now: datetime,
    *,
    secret: bytes,
    desk_address: str,
) -> OutboxMessage | None:
    """An abuse report (ARF) about one of our messages: noted on its case, never answered."""
    found = find_original(session, report, secret=secret, desk_address=desk_address)
    if found is None:
        return None
    original = found.message
    inbound.case_id = original.case_id
    record_event(
        session,
        now,
        "delivery.complaint",
        case_id=original.case_id,
        message=inbound.id,
        outbox=original.id,
        recipient=original.recipient,
    )
    log.warning("abuse complaint about outbox #%s to %s", original.id, original.recipient)
    return original
