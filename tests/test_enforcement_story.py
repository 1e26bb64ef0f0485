"""The whole enforcement story on a moving clock: warning, strike, suspension, expiry, ban."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.enforcement import EnforcementError, apply_sanction, approve_ban
from casework.models import (
    Action,
    ActionStatus,
    AuditEvent,
    Person,
    Restriction,
    RestrictionKind,
    RestrictionScope,
    RestrictionStatus,
)
from casework.settings import Step
from scheduler.app import App
from tests.enforcement_kit import (
    ASHA,
    RAVI,
    cli,
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
MEERA = "meera.mentor@example.com"
SUNIL = "sunil.support@example.com"
PRIYA = "priya.student@example.com"
VIKRAM = "vikram.mentor@example.com"

ELEMENT_WORDS = (
    "Decision:",
    "Scope:",
    "How long:",
    "The facts we relied on:",
    "The rule broken:",
    "How it came to our attention:",
    "reviewed this case",
    "Your standing:",
    "reply to this email by",
    "Resources to understand our policies",
    "Case reference: TS-",
)


def at(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def restrictions_of(
    app: App, email: str
) -> list[tuple[RestrictionScope, RestrictionKind, str | None, datetime | None, RestrictionStatus]]:
    with app.sessions() as session:
        person = session.scalars(select(Person).where(Person.email == email)).one()
        return [
            (r.scope, r.kind, r.program.code if r.program else None, r.until, r.status)
            for r in session.scalars(
                select(Restriction)
                .where(Restriction.person_id == person.id)
                .order_by(Restriction.id)
            )
        ]


def test_warning_strike_suspension_program_restrictions_and_expiry(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    load_roster(app, clock.now())

    # 1. First report: the next step is a warning.
    first = open_report(app, clock.now(), subject=KARAN, program="PY101")
    before = last_id(app)
    summary = command(
        app,
        first,
        lambda s, c: apply_sanction(
            app.desk, s, c, ASHA, None, "Asked a student to pay on WhatsApp.", clock.now()
        ),
    )
    assert summary.startswith("A-1: warning of karan.mentor@example.com in effect")
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (KARAN, "subject/warning"),
        (PRIYA, "reporter/outcome"),
    ]
    warning = next(m for m in sent if m.template == "subject/warning")
    for words in ELEMENT_WORDS:
        assert words in warning.text, words
    assert "Asked a student to pay on WhatsApp." in warning.text
    assert "Don't direct eCareerMentor's students away from the eCareerMentor platform." in (
        warning.text
    )
    assert "a report from a member of our community" in warning.text
    assert "counts until 4 July 2027, 09:00 UTC" in warning.text
    assert "the next step is a strike" in warning.text
    assert "reply to this email by 18 January 2027, 09:00 UTC" in warning.text
    assert PRIYA not in warning.text and "priya" not in warning.text.lower()
    assert "Reply-To" in warning.headers and "mentor4u+" in warning.headers["Reply-To"]
    outcome = next(m for m in sent if m.template == "reporter/outcome")
    assert "action taken" in outcome.text
    assert "WhatsApp" not in outcome.text and KARAN not in outcome.text
    answer = enforcement(config, KARAN, clock.now())
    assert answer["restricted"] is False and answer["banned"] is False
    assert answer["standing"]["next_step"] == "strike"
    assert [w["until"] for w in answer["standing"]["active_warnings"]] == [
        "2027-07-04T09:00:00+00:00"
    ]

    # 2. Second report a month later: a strike, a one-month suspension, program restrictions.
    clock.move_to(at(2027, 2, 1))
    second = open_report(
        app, clock.now(), subject=KARAN, reporter="anil.student@example.com", program="PY101"
    )
    before = last_id(app)
    summary = command(
        app,
        second,
        lambda s, c: apply_sanction(
            app.desk, s, c, ASHA, None, "Sent students a PayPal link for lessons.", clock.now()
        ),
    )
    assert "A-2: strike" in summary and "program restrictions for 2 member(s)" in summary
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        ("anil.student@example.com", "reporter/outcome"),
        (KARAN, "subject/strike"),
        (MEERA, "member/program-restriction"),
        (SUNIL, "member/program-restriction"),
    ]
    strike = next(m for m in sent if m.template == "subject/strike")
    for words in ELEMENT_WORDS:
        assert words in strike.text, words
    assert "until 1 March 2027, 09:00 UTC" in strike.text
    assert "publishing programs, messaging students, receiving new enrolments" in strike.text
    assert "The strike counts on your record for 6 months, until 1 August 2027" in strike.text
    assert "the next step is a permanent ban" in strike.text
    member = next(m for m in sent if m.recipient == MEERA)
    for words in ELEMENT_WORDS:
        assert words in member.text, words
    assert "This is a program restriction, not a strike" in member.text
    assert "Scope: program PY101 only" in member.text
    assert "no warnings or strikes count against you now" in member.text
    assert KARAN not in member.text and "anil" not in member.text
    assert "PayPal" not in member.text  # the subject's facts stay with the subject
    assert "found a violation of the rule below in program PY101" in member.text

    karan_rows = restrictions_of(app, KARAN)
    assert [(r[0], r[1], r[3]) for r in karan_rows] == [
        (RestrictionScope.ACCOUNT, RestrictionKind.SUSPENSION, at(2027, 3, 1))
    ]
    meera_rows = restrictions_of(app, MEERA)
    assert [r[:3] for r in meera_rows] == [
        (RestrictionScope.PROGRAM, RestrictionKind.PROGRAM_RESTRICTION, "PY101")
    ]
    answer = enforcement(config, KARAN, clock.now())
    assert answer["restricted"] is True
    assert answer["restrictions"] == [
        {
            "scope": "account",
            "program": None,
            "kind": "suspension",
            "since": "2027-02-01T09:00:00+00:00",
            "until": "2027-03-01T09:00:00+00:00",
            "case": f"TS-{second}",
            "action": "A-2",
            "rule": "off-platform",
            "counts_as_strike": False,
        }
    ]
    assert answer["standing"]["lifetime_strikes"] == 1
    assert answer["standing"]["next_step"] == "ban"
    meera = enforcement(config, MEERA, clock.now(), "--program", "PY101")
    assert meera["restricted"] is True
    assert meera["restrictions"][0]["scope"] == "program"
    assert meera["restrictions"][0]["program"] == "PY101"
    assert meera["standing"]["lifetime_strikes"] == 0
    assert meera["standing"]["active_strikes"] == []
    assert enforcement(config, MEERA, clock.now(), "--program", "DS200")["restricted"] is False

    # 3. One minute before the month is up nothing changes; at the month the features return.
    before = last_id(app)
    run_once(config, at(2027, 3, 1, 8, 59))
    assert outbox(app, before) == []
    run_once(config, at(2027, 3, 1))
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (KARAN, "subject/restored"),
        (MEERA, "member/restored"),
        (SUNIL, "member/restored"),
    ]
    assert all("restored" in m.text for m in sent)
    assert enforcement(config, KARAN, at(2027, 3, 1))["restricted"] is False
    assert enforcement(config, MEERA, at(2027, 3, 1), "--program", "PY101")["restricted"] is False
    assert {r[4] for r in restrictions_of(app, MEERA)} == {RestrictionStatus.ENDED}

    # 4. The warning stops counting on 4 July, the strike on 1 August (six calendar months).
    before = last_id(app)
    run_once(config, at(2027, 7, 4))
    sent = outbox(app, before)
    assert [(m.recipient, m.template) for m in sent] == [(KARAN, "subject/expired")]
    assert "Your warning A-1" in sent[0].text
    answer = enforcement(config, KARAN, at(2027, 7, 4))
    assert answer["standing"]["active_warnings"] == []
    assert answer["standing"]["next_step"] == "ban"  # the strike still counts
    before = last_id(app)
    run_once(config, at(2027, 8, 1))
    sent = outbox(app, before)
    assert [(m.recipient, m.template) for m in sent] == [(KARAN, "subject/expired")]
    assert "Your strike A-2" in sent[0].text
    assert "Your standing is now as follows" in sent[0].text
    assert "no warnings or strikes count against you now" in sent[0].text
    assert "the next step is a warning" in sent[0].text
    answer = enforcement(config, KARAN, at(2027, 8, 1))
    assert answer["standing"]["active_strikes"] == []
    assert answer["standing"]["lifetime_strikes"] == 1
    assert answer["standing"]["next_step"] == "warning"
    with app.sessions() as session:
        statuses = session.scalars(select(Action.status).order_by(Action.id)).all()
        kinds = session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)).all()
    assert statuses == [ActionStatus.EXPIRED, ActionStatus.EXPIRED]
    assert kinds.count("restriction.ended") == 3
    assert kinds.count("action.expired") == 2

    # 5. Sweeping again changes nothing.
    before = last_id(app)
    run_once(config, at(2027, 8, 1))
    run_once(config, at(2027, 8, 2))
    assert outbox(app, before) == []


def test_violation_while_strike_counts_leads_to_an_approved_ban(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    first = open_report(app, clock.now(), subject=VIKRAM, severity="high", rule="harassment")
    command(
        app,
        first,
        lambda s, c: apply_sanction(
            app.desk, s, c, ASHA, Step.STRIKE, "Abusive messages to a mentor.", clock.now()
        ),
    )
    clock.move_to(at(2027, 4, 1))
    second = open_report(app, clock.now(), subject=VIKRAM, rule="harassment")
    before = last_id(app)
    summary = command(
        app,
        second,
        lambda s, c: apply_sanction(
            app.desk, s, c, ASHA, None, "Threatened the same mentor again.", clock.now()
        ),
    )
    assert "ban of vikram.mentor@example.com proposed" in summary
    sent = outbox(app, before)
    assert [(m.recipient, m.template) for m in sent] == [(RAVI, "moderator/ban-pending")]
    answer = enforcement(config, VIKRAM, clock.now())
    assert answer["banned"] is False and answer["standing"]["ban_pending"] is True

    with pytest.raises(EnforcementError, match="second moderator"):
        command(app, second, lambda s, c: approve_ban(app.desk, s, c, ASHA, clock.now()))
    clock.move_to(at(2027, 4, 2))
    before = last_id(app)
    summary = command(app, second, lambda s, c: approve_ban(app.desk, s, c, RAVI, clock.now()))
    assert summary.startswith("A-2: ban of vikram.mentor@example.com in effect")
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (PRIYA, "reporter/outcome"),
        (VIKRAM, "subject/ban"),
    ]
    ban = next(m for m in sent if m.template == "subject/ban")
    for words in ELEMENT_WORDS:
        assert words in ban.text, words
    assert "permanently banned" in ban.text
    assert "How long: permanently, from 2 April 2027, 09:00 UTC." in ban.text
    answer = enforcement(config, VIKRAM, at(2030, 1, 1))
    assert answer["banned"] is True and answer["restricted"] is True
    assert [(r["kind"], r["until"]) for r in answer["restrictions"]] == [("ban", None)]
    assert answer["standing"]["next_step"] is None
    with pytest.raises(EnforcementError, match="already banned"):
        third = open_report(app, clock.now(), subject=VIKRAM)
        command(
            app, third, lambda s, c: apply_sanction(app.desk, s, c, ASHA, None, "x", clock.now())
        )

    # The suspension still ends and the strike expires, but a banned account is told nothing.
    before = last_id(app)
    run_once(config, at(2027, 8, 1))
    assert outbox(app, before) == []
    code, out, _ = cli(config, "cases", "show", f"TS-{second}", "--json")
    assert code == 0
    assert '"action": "A-2"' in out and '"decided_by": "ravi.moderator@ecareermentor.in"' in out
