"""Delivering the outbox by SMTP or into a Maildir, with retries, backoff and dead letters."""

from __future__ import annotations

import contextlib
import logging
import mailbox
import os
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from casework.audit import record_event
from casework.db import transaction
from casework.durations import doubling_delay
from casework.models import OutboxMessage, OutboxStatus
from outbound.caps import DeliveryGate, Tally, held_by_gate, log_holds, open_holds

log = logging.getLogger(__name__)


class SendError(Exception):
    """Delivery did not happen; `permanent` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Link(Protocol):
    """An open way to send: one SMTP connection, or a Maildir."""

    def send(self, sender: str, recipient: str, raw: bytes, key: str) -> None: ...


class Transport(Protocol):
    def connect(self) -> AbstractContextManager[Link]:
        """A link for one delivery run, closed at its end (opened lazily by SMTP)."""
        ...


@dataclass(frozen=True)
class MaildirTransport:
    """Writes each message into a Maildir instead of sending it (demos, dry runs, tests)."""

    path: Path

    def connect(self) -> AbstractContextManager[Link]:
        return contextlib.nullcontext(self)

    def send(self, sender: str, recipient: str, raw: bytes, key: str) -> None:
        try:
            box = mailbox.Maildir(self.path, create=True)
            if any((self.path / sub / key).exists() for sub in ("new", "cur")):
                return  # already written by an attempt whose bookkeeping did not commit
            tmp = self.path / "tmp" / key
            with tmp.open("wb") as handle:
                handle.write(b"Delivered-To: " + recipient.encode() + b"\r\n" + raw)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it is recorded as sent
            tmp.rename(self.path / "new" / key)
            _sync_folder(self.path / "new")
            del box
        except OSError as error:
            raise SendError(f"cannot write to {self.path}: {error}", permanent=False) from error


def _sync_folder(folder: Path) -> None:
    """Make a rename into `folder` durable (the directory entry is data too)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class DeliveryResult(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    first_delay: timedelta
    max_delay: timedelta

    def delay_after(self, attempts: int) -> timedelta:
        """Exponential backoff: first_delay, doubled each attempt, capped at max_delay."""
        first, cap = self.first_delay.total_seconds(), self.max_delay.total_seconds()
        return timedelta(seconds=doubling_delay(first, cap, attempts))


@dataclass(frozen=True)
class Deliverer:
    """Claims due outbox rows, sends them one by one, and records each outcome."""

    sessions: sessionmaker[Session]
    transport: Transport
    sender: str
    retry: RetryPolicy
    batch_size: int = 100
    lease: timedelta = timedelta(minutes=10)
    gate: DeliveryGate | None = None

    def flush(self, now: datetime) -> dict[DeliveryResult, int]:
        """Deliver everything due at `now`; returns how many were sent, deferred, dead."""
        counts = dict.fromkeys(DeliveryResult, 0)
        with self.transport.connect() as link:
            while True:
                claimed = self._claim(now)
                if not claimed:
                    return counts
                for row_id, recipient, raw, key in claimed:
                    counts[self._deliver(link, row_id, recipient, raw, key, now)] += 1

    def _claim(self, now: datetime) -> list[tuple[int, str, bytes, str]]:
        # A row stuck in SENDING past its lease belonged to a worker that died mid-send:
        # sending it again may duplicate it, losing it would be worse.
        due = or_(
            (OutboxMessage.status == OutboxStatus.PENDING) & (OutboxMessage.next_attempt_at <= now),
            (OutboxMessage.status == OutboxStatus.SENDING)
            & (OutboxMessage.claimed_at <= now - self.lease),
        )
        if self.gate is not None:  # held, and the hold may have ended: looked at again
            due = or_(due, (OutboxMessage.status == OutboxStatus.HELD) & held_by_gate(now))
        claimed: list[OutboxMessage] = []
        after = 0
        tally = Tally()
        newly_held: Counter[tuple[str, str]] = Counter()
        with transaction(self.sessions) as session:
            while len(claimed) < self.batch_size:
                rows = session.scalars(
                    select(OutboxMessage)
                    .where(due)
                    .where(OutboxMessage.id > after)
                    .order_by(OutboxMessage.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    break
                holding = open_holds(session, [r.id for r in rows]) if self.gate else {}
                for row in rows:
                    after = row.id
                    if len(claimed) >= self.batch_size:
                        break
                    if self.gate is not None:
                        hold = self.gate.check(session, row, now, tally)
                        current = holding.get(row.id)
                        if hold is not None:
                            # Also for held mail: a hold whose reason changed is replaced.
                            if self.gate.hold(session, row, hold, now, current):
                                newly_held[(row.recipient, hold.reason)] += 1
                            continue
                        self.gate.release(session, row, now, current)
                        self.gate.take(row, tally)
                    row.status = OutboxStatus.SENDING
                    row.claimed_at = now
                    row.attempts += 1
                    claimed.append(row)
            log_holds(newly_held)
            return [(r.id, r.recipient, r.raw, _maildir_key(r)) for r in claimed]

    def _deliver(
        self, link: Link, row_id: int, recipient: str, raw: bytes, key: str, now: datetime
    ) -> DeliveryResult:
        try:
            link.send(self.sender, recipient, raw, key)
        except SendError as error:
            return self._failed(row_id, str(error), error.permanent, now)
        with transaction(self.sessions) as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id)
                .values(status=OutboxStatus.SENT, sent_at=now, last_error="")
            )
        log.info("sent outbox #%s to %s", row_id, recipient)
        return DeliveryResult.SENT

    def _failed(self, row_id: int, error: str, permanent: bool, now: datetime) -> DeliveryResult:
        with transaction(self.sessions) as session:
            row = session.get_one(OutboxMessage, row_id)
            row.last_error = error[:2000]
            row.claimed_at = None
            if permanent or row.attempts >= self.retry.max_attempts:
                row.status = OutboxStatus.DEAD
                record_event(
                    session,
                    now,
                    "delivery.dead",
                    case_id=row.case_id,
                    outbox=row.id,
                    recipient=row.recipient,
                    attempts=row.attempts,
                    error=row.last_error,
                    permanent=permanent,
                )
                log.warning("outbox #%s to %s is dead: %s", row_id, row.recipient, error)
                return DeliveryResult.DEAD
            row.status = OutboxStatus.PENDING
            row.next_attempt_at = now + self.retry.delay_after(row.attempts)
            log.info("outbox #%s to %s deferred: %s", row_id, row.recipient, error)
            return DeliveryResult.RETRY


def _maildir_key(row: OutboxMessage) -> str:
    return f"safetydesk-outbox-{row.id}.{row.message_id.strip('<>').split('@')[0]}"
