"""The database tables of the desk, as SQLAlchemy 2 typed models."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from casework.settings import Step


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite has none) and hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is UTC:  # the desk's own times, nearly all: no conversion to make
            return value.replace(tzinfo=None)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def enum_column(kind: type[StrEnum]) -> SqlEnum:
    """A portable enum column stored as its string value (no native database enum)."""
    return SqlEnum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
    }


# --- statuses -----------------------------------------------------------------------------------


class CaseKind(StrEnum):
    REPORT = "report"
    QUESTION = "question"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    MERGED = "merged"


class Detection(StrEnum):
    """How a violation came to the desk's attention; notices say this, never who reported."""

    COMMUNITY_REPORT = "community-report"
    PROACTIVE = "proactive-monitoring"


class Party(StrEnum):
    """Which side of a case a message belongs to; threads never cross parties."""

    REPORTER = "reporter"
    SUBJECT = "subject"
    MODERATOR = "moderator"
    MEMBER = "member"


class Disposition(StrEnum):
    """What the pipeline did with an inbound message."""

    NEW_CASE = "new-case"
    FOLLOW_UP = "follow-up"
    COMMAND = "command"
    AUTOMATED = "automated"
    LOOP = "loop"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    HELD = "held"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    HELD = "held"


class QuarantineStatus(StrEnum):
    HELD = "held"
    REPLAYED = "replayed"


class ProgramRole(StrEnum):
    MENTOR = "mentor"
    SUPPORT = "support"


# --- people and programs ------------------------------------------------------------------------


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]

    memberships: Mapped[list[ProgramMember]] = relationship(back_populates="person")


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")

    members: Mapped[list[ProgramMember]] = relationship(
        back_populates="program", cascade="all, delete-orphan"
    )


class ProgramMember(Base):
    __tablename__ = "program_members"
    __table_args__ = (UniqueConstraint("program_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    role: Mapped[ProgramRole] = mapped_column(enum_column(ProgramRole))

    program: Mapped[Program] = relationship(back_populates="members")
    person: Mapped[Person] = relationship(back_populates="memberships")


# --- cases --------------------------------------------------------------------------------------


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CaseKind] = mapped_column(enum_column(CaseKind))
    status: Mapped[CaseStatus] = mapped_column(enum_column(CaseStatus), default=CaseStatus.OPEN)
    category: Mapped[str | None] = mapped_column(String(32))
    suggested_category: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(32))
    detection: Mapped[Detection] = mapped_column(
        enum_column(Detection), default=Detection.COMMUNITY_REPORT
    )
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"))
    assignee: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str] = mapped_column(String(300), default="")
    resolution: Mapped[str | None] = mapped_column(String(32))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_moderator_activity_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    reporter: Mapped[Person | None] = relationship(foreign_keys=[reporter_id])
    subject: Mapped[Person | None] = relationship(foreign_keys=[subject_id])
    program: Mapped[Program | None] = relationship()

    @property
    def ref(self) -> str:
        return case_ref(self.id)


def case_ref(case_id: int) -> str:
    """How a case is named to people: in subjects, commands and the CLI."""
    return f"TS-{case_id}"


# --- mail in ------------------------------------------------------------------------------------


class InboundMessage(Base):
    """Every message the desk received, with its exact bytes as evidence."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_inbound_mailbox_uid"),
        Index("ix_inbound_message_id", "message_id"),
        Index("ix_inbound_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    mailbox: Mapped[str | None] = mapped_column(String(500))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    truncated: Mapped[bool] = mapped_column(default=False)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(300), default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None]
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text, default="")
    defects: Mapped[dict[str, Any]] = mapped_column(default=dict)
    disposition: Mapped[Disposition] = mapped_column(enum_column(Disposition))
    reason: Mapped[str] = mapped_column(String(200), default="")
    party: Mapped[Party | None] = mapped_column(enum_column(Party))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", cascade="all, delete-orphan"
    )
    case: Mapped[Case | None] = relationship()


class Attachment(Base):
    """An attachment's description; its bytes stay inside the raw message."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(500), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))

    message: Mapped[InboundMessage] = relationship(back_populates="attachments")


class MailboxCursor(Base):
    """How far a mailbox has been read: UIDVALIDITY and the highest UID handled."""

    __tablename__ = "mailbox_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(500), unique=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class QuarantineEntry(Base):
    """A message that could not be processed, kept whole with the reason, for replay."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(500), default="", index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[QuarantineStatus] = mapped_column(
        enum_column(QuarantineStatus), default=QuarantineStatus.HELD
    )
    replayed_at: Mapped[datetime | None]


# --- mail out -----------------------------------------------------------------------------------


class OutboxMessage(Base):
    """An email the desk sends, written in the same transaction as the change it reports."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    party: Mapped[Party | None] = mapped_column(enum_column(Party))
    template: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(
        enum_column(OutboxStatus), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")


# --- the audit log ------------------------------------------------------------------------------


class AuditEvent(Base):
    """One entry of the append-only record of who did what, and when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditLogIsAppendOnly(Exception):
    """An attempt to change or delete an audit event."""


@event.listens_for(AuditEvent, "before_update")
def _refuse_audit_update(*_: object) -> None:
    raise AuditLogIsAppendOnly("audit events are never changed")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_audit_delete(*_: object) -> None:
    raise AuditLogIsAppendOnly("audit events are never deleted")


# --- enforcement: sanctions, restrictions and appeals -------------------------------------------


class ActionStatus(StrEnum):
    """Where a sanction stands; only ACTIVE and EXPIRED ones are on the person's record."""

    PENDING = "pending"  # a ban waiting for a second moderator
    ACTIVE = "active"
    EXPIRED = "expired"  # stopped counting on its date; still part of the history
    REJECTED = "rejected"  # a pending ban that a moderator did not approve
    OVERTURNED = "overturned"  # on appeal
    REVOKED = "revoked"  # withdrawn as a mistake


class RestrictionScope(StrEnum):
    ACCOUNT = "account"
    PROGRAM = "program"


class RestrictionKind(StrEnum):
    SUSPENSION = "suspension"
    BAN = "ban"
    PROGRAM_RESTRICTION = "program-restriction"


class RestrictionStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"  # ran its course
    LIFTED = "lifted"  # its action was overturned or revoked


class AppealStatus(StrEnum):
    OPEN = "open"
    UPHELD = "upheld"
    OVERTURNED = "overturned"
    WITHDRAWN = "withdrawn"  # the action was revoked before the appeal was decided


class Action(Base):
    """A step of the ladder applied to one person for one case: warning, strike or ban."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_due", "status", "counts_until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    kind: Mapped[Step] = mapped_column(enum_column(Step))
    status: Mapped[ActionStatus] = mapped_column(enum_column(ActionStatus))
    rule: Mapped[str] = mapped_column(String(32))
    facts: Mapped[str] = mapped_column(Text)
    severity: Mapped[str | None] = mapped_column(String(32))
    issued_by: Mapped[str] = mapped_column(String(320))
    issued_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_at: Mapped[datetime | None]
    effective_at: Mapped[datetime | None]
    counts_until: Mapped[datetime | None]
    appeal_until: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(320))
    end_reason: Mapped[str] = mapped_column(Text, default="")

    case: Mapped[Case] = relationship()
    person: Mapped[Person] = relationship()
    restrictions: Mapped[list[Restriction]] = relationship(
        back_populates="action", order_by="Restriction.id"
    )
    appeals: Mapped[list[Appeal]] = relationship(back_populates="action", order_by="Appeal.id")

    @property
    def ref(self) -> str:
        return f"A-{self.id}"


class Restriction(Base):
    """Features taken from one person for a time: a suspension, a ban or a program restriction."""

    __tablename__ = "restrictions"
    __table_args__ = (Index("ix_restrictions_due", "status", "until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    scope: Mapped[RestrictionScope] = mapped_column(enum_column(RestrictionScope))
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"))
    kind: Mapped[RestrictionKind] = mapped_column(enum_column(RestrictionKind))
    status: Mapped[RestrictionStatus] = mapped_column(enum_column(RestrictionStatus))
    features: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime]
    until: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    action: Mapped[Action] = relationship(back_populates="restrictions")
    person: Mapped[Person] = relationship()
    program: Mapped[Program | None] = relationship()


class Appeal(Base):
    """The sanctioned person's reply contesting an action, and its decision."""

    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    received_at: Mapped[datetime]
    status: Mapped[AppealStatus] = mapped_column(enum_column(AppealStatus))
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_at: Mapped[datetime | None]
    reasoning: Mapped[str] = mapped_column(Text, default="")

    action: Mapped[Action] = relationship(back_populates="appeals")


# --- moderator commands: reminders and digests ---------------------------------------------------


class ReminderKind(StrEnum):
    UNASSIGNED = "unassigned"
    UNANSWERED = "unanswered"


class CaseReminder(Base):
    """A reminder sent about a stale case; one per case, kind and start of the wait."""

    __tablename__ = "case_reminders"
    __table_args__ = (UniqueConstraint("case_id", "kind", "waiting_since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[ReminderKind] = mapped_column(enum_column(ReminderKind))
    waiting_since: Mapped[datetime]
    sent_at: Mapped[datetime]


class DigestRun(Base):
    """The daily digest of open cases, sent once per calendar day (UTC)."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(10), unique=True)
    sent_at: Mapped[datetime]
    open_cases: Mapped[int] = mapped_column(Integer, default=0)


# --- mail hygiene: bounces, suppressed addresses, held outbound mail -----------------------------


class BounceKind(StrEnum):
    """RFC 3463 status classes: 5.x.x is permanent (hard), 4.x.x transient (soft)."""

    HARD = "hard"
    SOFT = "soft"
    UNKNOWN = "unknown"


class HoldKind(StrEnum):
    """Why the deliverer is holding an outbox message back instead of sending it."""

    ADDRESS_CAP = "address-cap"
    GLOBAL_CAP = "global-cap"
    SUPPRESSED = "suppressed"


class Bounce(Base):
    """A delivery report, tied to the outbox message and case it reports on when found."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), index=True
    )
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True, default="")
    status: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(32), default="")
    kind: Mapped[BounceKind] = mapped_column(enum_column(BounceKind))
    counted: Mapped[bool] = mapped_column(default=False)


class Suppression(Base):
    """An address the desk does not send to until `until`, after repeated hard bounces."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    bounces: Mapped[int] = mapped_column(Integer, default=0)
    since: Mapped[datetime]
    until: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str] = mapped_column(String(320), default="")


class OutboxHold(Base):
    """One period during which an outbox message was held back, and why."""

    __tablename__ = "outbox_holds"
    __table_args__ = (Index("ix_outbox_holds_open", "released_at", "recheck_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    kind: Mapped[HoldKind] = mapped_column(enum_column(HoldKind))
    reason: Mapped[str] = mapped_column(Text, default="")
    held_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    # The earliest moment the hold could end by itself; the message is not looked at before.
    recheck_at: Mapped[datetime | None]
