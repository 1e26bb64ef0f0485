"""The delivery gate: rate caps and suppressed addresses hold outbound mail back, never drop it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.clock import as_utc
from casework.models import HoldKind, OutboxHold, OutboxMessage, OutboxStatus
from casework.suppressions import active_suppression

log = logging.getLogger(__name__)

_HOUR = timedelta(hours=1)
_GLOBAL = "\x00global"  # the memo key of the global cap (no address contains NUL)


@dataclass(frozen=True)
class CapPolicy:
    """How much automatic mail may go out; 0 switches a cap off.

    Moderators (`exempt`) are outside the global cap and get their own, much higher
    per-address cap: their mail is how they work the desk, and a flood of reports must
    not cost them transcripts, but a moderator mailbox that auto-answers without saying
    so must still not loop with the desk for ever. Suppression (a mailbox that
    hard-bounces) applies to everyone. Held mail is sent later, never dropped.
    """

    per_address_cap: int = 5
    per_address_window: timedelta = timedelta(hours=1)
    global_cap_per_hour: int = 500
    moderator_cap: int = 120
    exempt: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hold:
    """Why a message waits, and the earliest moment that could change by itself (`until`):
    the end of a suppression, or when the oldest message counted against the cap leaves its
    window. Held mail is not looked at again before then."""

    kind: HoldKind
    reason: str
    until: datetime


@dataclass
class Tally:
    """What one claim has looked up and taken so far; within a claim counts only grow.

    Each address's suppression and sent count is read once per claim, and the global count
    once, then kept up to date as rows are claimed: a claim of N rows costs queries per
    address, not per row.
    """

    holds: dict[str, Hold] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # per address, and _GLOBAL
    oldest: dict[str, datetime | None] = field(default_factory=dict)  # went first of those


@dataclass(frozen=True)
class DeliveryGate:
    """Decides, row by row at claim time, whether an outbox message may be sent now."""

    policy: CapPolicy

    def check(
        self, session: Session, row: OutboxMessage, now: datetime, tally: Tally
    ) -> Hold | None:
        """None when `row` may go now, else why it is held (the caller holds it)."""
        recipient = row.recipient
        moderator = recipient in self.policy.exempt
        known = tally.holds.get(recipient) or (None if moderator else tally.holds.get(_GLOBAL))
        if known is not None:
            return known
        cap = self.policy.moderator_cap if moderator else self.policy.per_address_cap
        window = self.policy.per_address_window
        if recipient not in tally.sent:
            suppression = active_suppression(session, recipient, now)
            if suppression is not None:
                tally.holds[recipient] = Hold(
                    HoldKind.SUPPRESSED,
                    f"{recipient} is suppressed until {suppression.until.isoformat()} "
                    f"({suppression.reason})",
                    suppression.until,
                )
                return tally.holds[recipient]
            counted = _count_sent(session, now - window, recipient) if cap > 0 else (0, None)
            tally.sent[recipient], tally.oldest[recipient] = counted
        sent = tally.sent[recipient]
        if cap > 0 and sent >= cap:
            tally.holds[recipient] = Hold(
                HoldKind.ADDRESS_CAP,
                f"{sent} messages to {recipient} in the last {window} (cap {cap})",
                (tally.oldest.get(recipient) or now) + window,
            )
            return tally.holds[recipient]
        cap = 0 if moderator else self.policy.global_cap_per_hour
        if cap > 0:
            if _GLOBAL not in tally.sent:
                counted = _count_sent(session, now - _HOUR, None, exclude=self.policy.exempt)
                tally.sent[_GLOBAL], tally.oldest[_GLOBAL] = counted
            sent = tally.sent[_GLOBAL]
            if sent >= cap:
                tally.holds[_GLOBAL] = Hold(
                    HoldKind.GLOBAL_CAP,
                    f"{sent} automatic messages in the last hour (cap {cap})",
                    (tally.oldest.get(_GLOBAL) or now) + _HOUR,
                )
                return tally.holds[_GLOBAL]
        return None

    def take(self, row: OutboxMessage, tally: Tally) -> None:
        """Count `row`, just claimed, against its caps for the rest of the claim."""
        tally.sent[row.recipient] = tally.sent.get(row.recipient, 0) + 1
        if _GLOBAL in tally.sent and row.recipient not in self.policy.exempt:
            tally.sent[_GLOBAL] += 1

    def hold(
        self,
        session: Session,
        row: OutboxMessage,
        hold: Hold,
        now: datetime,
        current: OutboxHold | None,
    ) -> bool:
        """Hold `row` (whose open hold is `current`); True when this is a new hold.

        A new hold gets an audit event; the caller logs it.
        """
        row.status = OutboxStatus.HELD
        row.claimed_at = None
        if current is not None and current.kind is hold.kind:
            current.recheck_at = hold.until
            return False
        if current is not None:
            current.released_at = now
        session.add(
            OutboxHold(
                outbox_id=row.id,
                kind=hold.kind,
                reason=hold.reason,
                held_at=now,
                recheck_at=hold.until,
            )
        )
        row.last_error = f"held: {hold.reason}"[:2000]
        record_event(
            session,
            now,
            "delivery.held",
            case_id=row.case_id,
            outbox=row.id,
            recipient=row.recipient,
            hold=hold.kind.value,
            reason=hold.reason,
        )
        log.debug("holding outbox #%s to %s: %s", row.id, row.recipient, hold.reason)
        return True

    def release(
        self, session: Session, row: OutboxMessage, now: datetime, current: OutboxHold | None
    ) -> None:
        """End `current`, the open hold of `row`, if any: the window allows it now."""
        if current is None:
            return
        current.released_at = now
        row.last_error = ""
        record_event(
            session,
            now,
            "delivery.released",
            case_id=row.case_id,
            outbox=row.id,
            recipient=row.recipient,
            hold=current.kind.value,
            held_since=current.held_at.isoformat(),
        )
        log.info("releasing outbox #%s to %s (%s)", row.id, row.recipient, current.kind.value)


def open_holds(session: Session, outbox_ids: list[int]) -> dict[int, OutboxHold]:
    """The open hold of each of these outbox rows that has one (the newest, if several)."""
    found: dict[int, OutboxHold] = {}
    for hold in session.scalars(
        select(OutboxHold)
        .where(OutboxHold.outbox_id.in_(outbox_ids))
        .where(OutboxHold.released_at.is_(None))
        .order_by(OutboxHold.id)
    ):
        found[hold.outbox_id] = hold
    return found


def held_by_gate(now: datetime) -> object:
    """The condition for outbox rows the gate holds and may release by itself at `now`: those
    whose hold could have ended by then. The rest of a backlog costs a claim nothing."""
    return OutboxMessage.id.in_(
        select(OutboxHold.outbox_id)
        .where(OutboxHold.released_at.is_(None))
        .where(or_(OutboxHold.recheck_at.is_(None), OutboxHold.recheck_at <= now))
    )


def _count_sent(
    session: Session,
    since: datetime,
    recipient: str | None,
    *,
    exclude: frozenset[str] = frozenset(),
) -> tuple[int, datetime | None]:
    """How many messages were sent, or are being sent, since `since` (to `recipient`, or to
    anyone not excluded), and when the first of them went."""
    went = func.coalesce(OutboxMessage.sent_at, OutboxMessage.claimed_at)
    query = (
        select(func.count(), func.min(went))
        .select_from(OutboxMessage)
        .where(
            or_(
                (OutboxMessage.status == OutboxStatus.SENT) & (OutboxMessage.sent_at >= since),
                (OutboxMessage.status == OutboxStatus.SENDING)
                & (OutboxMessage.claimed_at >= since),
            )
        )
    )
    if recipient is not None:
        query = query.where(OutboxMessage.recipient == recipient)
    if exclude:
        query = query.where(OutboxMessage.recipient.not_in(sorted(exclude)))
    count, oldest = session.execute(query).one()
    return int(count or 0), None if oldest is None else as_utc(oldest)


def held_counts(session: Session) -> dict[str, int]:
    """How many outbox messages the gate holds, by reason (for `safetydesk check`)."""
    rows = session.execute(
        select(OutboxHold.kind, func.count())
        .where(OutboxHold.released_at.is_(None))
        .group_by(OutboxHold.kind)
    ).all()
    return {kind.value: int(count) for kind, count in rows}


def log_holds(newly_held: dict[tuple[str, str], int]) -> None:
    """One warning per address and reason per claim, however many messages a flood held."""
    for (recipient, reason), count in sorted(newly_held.items()):
        log.warning("holding %s message(s) to %s: %s", count, recipient, reason)
