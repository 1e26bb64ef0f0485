"""Calendar arithmetic, catching up after downtime, and sweeps that run twice or at once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from casework.clock import FixedClock
from casework.enforcement import apply_sanction
from casework.models import Action, AuditEvent, Restriction
from casework.settings import Step
from casework.sweeps import EnforcementSweep
from scheduler.app import App, build_app
from scheduler.config import Settings
from tests.enforcement_kit import (
    ASHA,
    command,
    enforcement,
    last_id,
    load_roster,
    open_report,
    outbox,
    run_once,
    write_config,
)

KARAN = "karan.mentor@example.com"


def at(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def strike(app: App, now: datetime, subject: str = KARAN, program: str | None = None) -> int:
    case_id = open_report(app, now, subject=subject, severity="high", program=program)
    command(
        app,
        case_id,
        lambda s, c: apply_sanction(app.desk, s, c, ASHA, Step.STRIKE, "Spam links.", now),
    )
    return case_id


def test_a_strike_on_31_january_suspends_until_the_end_of_february(
    app: App, tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    strike(app, at(2027, 1, 31))
    strike(app, at(2028, 1, 31), subject="leap.mentor@example.com")
    with app.sessions() as session:
        untils = session.scalars(select(Restriction.until).order_by(Restriction.id)).all()
        counts = session.scalars(select(Action.counts_until).order_by(Action.id)).all()
    assert untils == [at(2027, 2, 28), at(2028, 2, 29)]
    assert counts == [at(2027, 7, 31), at(2028, 7, 31)]
    assert enforcement(config, KARAN, at(2027, 2, 28, 8))["restricted"] is True
    assert enforcement(config, KARAN, at(2027, 2, 28, 9))["restricted"] is False
    answer = enforcement(config, "leap.mentor@example.com", at(2028, 2, 29, 8))
    assert answer["restrictions"][0]["until"] == "2028-02-29T09:00:00+00:00"


def test_catching_up_after_weeks_of_downtime_sends_each_notice_once(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    load_roster(app, clock.now())
    strike(app, clock.now(), program="PY101")
    before = last_id(app)
    # The worker was down from the strike until well after it stopped counting.
    run_once(config, at(2027, 9, 15))
    sent = outbox(app, before)
    assert Counter((m.recipient, m.template) for m in sent) == Counter(
        {
            (KARAN, "subject/restored"): 1,
            ("meera.mentor@example.com", "member/restored"): 1,
            ("sunil.support@example.com", "member/restored"): 1,
            (KARAN, "subject/expired"): 1,
        }
    )
    with app.sessions() as session:
        ended = session.scalars(select(Restriction.ended_at)).all()
        expired = session.scalars(select(Action.ended_at)).all()
        events = Counter(session.scalars(select(AuditEvent.kind)).all())
    # The records say when things were due, not when the worker noticed.
    assert set(ended) == {at(2027, 2, 4)}
    assert expired == [at(2027, 7, 4)]
    assert events["restriction.ended"] == 3 and events["action.expired"] == 1
    before = last_id(app)
    run_once(config, at(2027, 9, 15))
    run_once(config, at(2027, 10, 1))
    assert outbox(app, before) == []


def test_concurrent_sweeps_make_each_transition_once(app: App, clock: FixedClock) -> None:
    load_roster(app, clock.now())
    for index in range(6):
        strike(app, clock.now(), subject=f"mentor{index}@example.com", program="PY101")
    before = last_id(app)
    sweeps = [EnforcementSweep(app.desk, app.sessions) for _ in range(3)]
    barrier = threading.Barrier(len(sweeps))
    errors: list[BaseException] = []

    def run(sweep: EnforcementSweep) -> None:
        barrier.wait()
        try:
            sweep(at(2027, 12, 1))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(sweep,)) for sweep in sweeps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    sent = outbox(app, before)
    per = Counter((m.recipient, m.template, m.headers["X-SafetyDesk-Case"]) for m in sent)
    assert len(per) == 6 * (1 + 3 + 1) and set(per.values()) == {1}
    with app.sessions() as session:
        events = Counter(session.scalars(select(AuditEvent.kind)).all())
        restrictions = session.scalar(select(Restriction.id).order_by(Restriction.id.desc()))
    assert events["action.expired"] == 6
    assert events["restriction.ended"] == restrictions


def test_features_are_restored_only_when_the_last_overlapping_suspension_ends(
    app: App, tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    strike(app, at(2027, 1, 4))
    # A moderator may stay below the next step (a ban): a second strike two weeks later.
    strike(app, at(2027, 1, 18))
    before = last_id(app)
    run_once(config, at(2027, 2, 4))
    assert outbox(app, before) == []  # still suspended by the second strike
    assert enforcement(config, KARAN, at(2027, 2, 4))["restricted"] is True
    run_once(config, at(2027, 2, 18))
    assert [(m.recipient, m.template) for m in outbox(app, before)] == [(KARAN, "subject/restored")]


def test_concurrent_sanctions_on_one_person_climb_the_ladder_once_each(
    make_settings: Callable[..., Settings], postgres_url: str, clock: FixedClock
) -> None:
    app = build_app(make_settings(postgres_url), migrate=True)
    try:
        cases = [open_report(app, clock.now(), subject=KARAN) for _ in range(2)]
        barrier = threading.Barrier(2)
        results: list[str] = []

        def run(case_id: int) -> None:
            barrier.wait()
            results.append(
                command(
                    app,
                    case_id,
                    lambda s, c: apply_sanction(app.desk, s, c, ASHA, None, "F.", clock.now()),
                )
            )

        threads = [threading.Thread(target=run, args=(case_id,)) for case_id in cases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with app.sessions() as session:
            kinds = sorted(k.value for k in session.scalars(select(Action.kind)))
        assert kinds == ["strike", "warning"]
    finally:
        app.engine.dispose()
