"""Rate caps: past a cap mail is held (never dropped), the operator is told, and it goes later."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from casework.clock import FixedClock
from casework.models import (
    AuditEvent,
    HoldKind,
    OutboxHold,
    OutboxMessage,
    OutboxStatus,
    Party,
    Suppression,
)
from intake.pipeline import SourceRef
from scheduler.app import App, build_app
from tests.conftest import MODERATORS, SettingsFactory
from tests.hygiene_mail import make_dsn
from tests.mail import make_mail

SPAMMED = "victim@example.org"


@pytest.fixture
def capped(make_settings: SettingsFactory, db_url: str) -> Iterator[App]:
    built = build_app(
        make_settings(
            db_url,
            hygiene={"per_address_cap": 3, "per_address_window": "PT1H", "global_cap_per_hour": 6},
        ),
        migrate=True,
    )
    yield built
    built.engine.dispose()


def statuses(app: App, recipient: str) -> list[OutboxStatus]:
    with app.sessions() as session:
        return [
            row.status
            for row in session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.recipient == recipient)
                .order_by(OutboxMessage.id)
            )
        ]


def test_acknowledgements_past_the_per_address_cap_are_held_then_released(
    capped: App, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(5):  # someone forges five reports "from" the victim
        capped.pipeline.process(make_mail(SPAMMED, subject=f"r{n}"), SourceRef(), clock.now())
    capped.deliverer.flush(clock.now())
    S, H = OutboxStatus.SENT, OutboxStatus.HELD
    assert statuses(capped, SPAMMED) == [S, S, S, H, H]
    # moderators are never capped: every new-case email reached them
    for moderator in MODERATORS:
        assert statuses(capped, moderator) == [S] * 5
    with capped.sessions() as session:
        holds = session.scalars(select(OutboxHold).order_by(OutboxHold.id)).all()
        assert [h.kind for h in holds] == [HoldKind.ADDRESS_CAP] * 2
        events = session.scalars(select(AuditEvent).where(AuditEvent.kind == "delivery.held")).all()
        assert len(events) == 2 and all(e.case_id for e in events)
    assert f"holding 2 message(s) to {SPAMMED}" in caplog.text

    # the operator is told once per hold, not on every flush
    capped.deliverer.flush(clock.now() + timedelta(minutes=10))
    with capped.sessions() as session:
        held_events = session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "delivery.held")
        ).all()
        assert len(held_events) == 2

    # an hour later the window allows them again, oldest first
    clock.move_to(clock.now() + timedelta(hours=1, seconds=1))
    capped.deliverer.flush(clock.now())
    assert statuses(capped, SPAMMED) == [S] * 5
    with capped.sessions() as session:
        assert all(h.released_at == clock.now() for h in session.scalars(select(OutboxHold)))
        assert (
            len(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.kind == "delivery.released")
                ).all()
            )
            == 2
        )


def test_the_global_cap_holds_mail_to_strangers_but_not_to_moderators(
    capped: App, clock: FixedClock
) -> None:
    senders = [f"student{n}@example.com" for n in range(9)]
    for sender in senders:
        capped.pipeline.process(make_mail(sender), SourceRef(), clock.now())
    capped.deliverer.flush(clock.now())
    with capped.sessions() as session:
        acks = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.party == Party.REPORTER)
            .order_by(OutboxMessage.id)
        ).all()
        assert [a.status for a in acks] == [OutboxStatus.SENT] * 6 + [OutboxStatus.HELD] * 3
        assert {h.kind for h in session.scalars(select(OutboxHold))} == {HoldKind.GLOBAL_CAP}
        to_moderators = session.scalars(
            select(OutboxMessage).where(OutboxMessage.party == Party.MODERATOR)
        ).all()
        assert len(to_moderators) == 18
        assert all(m.status is OutboxStatus.SENT for m in to_moderators)
    clock.move_to(clock.now() + timedelta(hours=1, seconds=1))
    capped.deliverer.flush(clock.now())
    with capped.sessions() as session:
        assert all(
            row.status is OutboxStatus.SENT for row in session.scalars(select(OutboxMessage))
        )


def test_held_mail_does_not_block_the_mail_behind_it(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    """More held rows than a claim batch must not starve newer mail to other people."""
    app = build_app(
        make_settings(sqlite_url, hygiene={"per_address_cap": 1}, outbound={"batch_size": 2}),
        migrate=True,
    )
    for n in range(6):
        app.pipeline.process(make_mail(SPAMMED, subject=f"r{n}"), SourceRef(), clock.now())
    app.pipeline.process(make_mail("someone.else@example.com"), SourceRef(), clock.now())
    app.deliverer.flush(clock.now())
    assert statuses(app, "someone.else@example.com") == [OutboxStatus.SENT]
    assert statuses(app, SPAMMED).count(OutboxStatus.HELD) == 5
    app.engine.dispose()


def test_outbox_retry_does_not_bypass_the_caps(capped: App, clock: FixedClock) -> None:
    for n in range(4):
        capped.pipeline.process(make_mail(SPAMMED, subject=f"r{n}"), SourceRef(), clock.now())
    capped.deliverer.flush(clock.now())
    with capped.sessions.begin() as session:
        held = session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.HELD)
        ).one()
        held.status = OutboxStatus.PENDING  # what `outbox retry ID` does
    capped.deliverer.flush(clock.now())
    assert statuses(capped, SPAMMED).count(OutboxStatus.HELD) == 1


def test_held_mail_takes_the_new_reason_when_its_hold_changes(
    capped: App, clock: FixedClock
) -> None:
    for n in range(5):
        capped.pipeline.process(make_mail(SPAMMED, subject=f"r{n}"), SourceRef(), clock.now())
    capped.deliverer.flush(clock.now())
    # The three that went hard-bounce, which suppresses the address, while two are held by
    # the cap until the hour is up: the next run must look at them again now.
    with capped.sessions() as session:
        sent = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SENT)
            .where(OutboxMessage.recipient == SPAMMED)
        ).all()
    clock.move_to(clock.now() + timedelta(minutes=5))
    for ack in sent:
        capped.pipeline.process(make_dsn(ack.raw, ack.recipient), SourceRef(), clock.now())
    with capped.sessions() as session:
        assert session.scalars(select(Suppression.address)).all() == [SPAMMED]
    capped.deliverer.flush(clock.now())

    with capped.sessions() as session:
        holds = session.scalars(select(OutboxHold).order_by(OutboxHold.id)).all()
    assert [(h.kind, h.released_at is None) for h in holds] == [
        (HoldKind.ADDRESS_CAP, False),
        (HoldKind.ADDRESS_CAP, False),
        (HoldKind.SUPPRESSED, True),
        (HoldKind.SUPPRESSED, True),
    ]
    assert statuses(capped, SPAMMED)[3:] == [OutboxStatus.HELD] * 2


class LoadCounter:
    """Counts the outbox rows the ORM reads until it is closed."""

    def __init__(self) -> None:
        self.loaded = 0
        event.listen(OutboxMessage, "load", self._load)

    def _load(self, *_args: object) -> None:
        self.loaded += 1

    def close(self) -> None:
        event.remove(OutboxMessage, "load", self._load)


def test_held_mail_is_not_read_again_before_its_hold_could_end(
    capped: App, clock: FixedClock
) -> None:
    for n in range(5):
        capped.pipeline.process(make_mail(SPAMMED, subject=f"r{n}"), SourceRef(), clock.now())
    first_sent = clock.now()
    capped.deliverer.flush(clock.now())
    with capped.sessions() as session:
        holds = session.scalars(select(OutboxHold)).all()
    # The cap frees a place when the oldest of the three sent leaves the hour.
    assert [h.recheck_at for h in holds] == [first_sent + timedelta(hours=1)] * 2

    counter = LoadCounter()
    try:
        for minutes in (1, 15, 59):
            capped.deliverer.flush(first_sent + timedelta(minutes=minutes))
        assert counter.loaded == 0  # a claim does not even read them
        clock.move_to(first_sent + timedelta(hours=1, seconds=1))
        capped.deliverer.flush(clock.now())
        assert counter.loaded == 2
    finally:
        counter.close()
    assert statuses(capped, SPAMMED) == [OutboxStatus.SENT] * 5


def test_the_global_cap_and_a_suppression_say_when_their_mail_may_go(
    capped: App, clock: FixedClock
) -> None:
    start = clock.now()
    for n in range(8):  # six acknowledgements go within the hour: the global cap is 6
        clock.move_to(start + timedelta(minutes=n))
        capped.pipeline.process(make_mail(f"student{n}@example.com"), SourceRef(), clock.now())
        capped.deliverer.flush(clock.now())
    with capped.sessions() as session:
        holds = session.scalars(select(OutboxHold).order_by(OutboxHold.id)).all()
    assert [h.kind for h in holds] == [HoldKind.GLOBAL_CAP] * 2
    assert [h.recheck_at for h in holds] == [start + timedelta(hours=1)] * 2

    later = start + timedelta(minutes=30)
    with capped.sessions.begin() as session:
        session.add(
            Suppression(
                address="student9@example.com",
                reason="3 hard bounces",
                bounces=3,
                since=later,
                until=later + timedelta(days=30),
            )
        )
    clock.move_to(later)
    capped.pipeline.process(make_mail("student9@example.com"), SourceRef(), clock.now())
    capped.deliverer.flush(clock.now())
    with capped.sessions() as session:
        hold = session.scalars(select(OutboxHold).order_by(OutboxHold.id.desc())).first()
    assert hold is not None and hold.kind is HoldKind.SUPPRESSED
    assert hold.recheck_at == later + timedelta(days=30)
