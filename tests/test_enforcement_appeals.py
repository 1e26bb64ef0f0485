"""Appeals decided by another moderator, overturning that lifts everything, and revocation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.enforcement import (
    EnforcementError,
    apply_sanction,
    decide_appeal,
    record_appeal,
    revoke_action,
)
from casework.models import (
    Action,
    ActionStatus,
    Appeal,
    AppealStatus,
    InboundMessage,
    Party,
    Restriction,
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
    subject_reply,
    write_config,
)

KARAN = "karan.mentor@example.com"
MEERA = "meera.mentor@example.com"
SUNIL = "sunil.support@example.com"


def strike_karan(app: App, clock: FixedClock) -> int:
    load_roster(app, clock.now())
    case_id = open_report(app, clock.now(), subject=KARAN, program="PY101", severity="high")
    command(
        app,
        case_id,
        lambda s, c: apply_sanction(
            app.desk, s, c, ASHA, Step.STRIKE, "Shared a payment link.", clock.now()
        ),
    )
    return case_id


def appeal(app: App, case_id: int, sender: str, text: str, now: datetime) -> bool:
    inbound_id = subject_reply(app, case_id, sender, text, now)
    return command(
        app,
        case_id,
        lambda s, c: str(record_appeal(app.desk, s, c, s.get_one(InboundMessage, inbound_id), now)),
    ) == str(True)


def test_overturned_appeal_lifts_the_strike_and_every_program_restriction(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    case_id = strike_karan(app, clock)
    clock.move_to(clock.now() + timedelta(days=3))
    before = last_id(app)
    assert appeal(app, case_id, KARAN, "That link was the platform's own checkout.", clock.now())
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (ASHA, "moderator/appeal"),
        (KARAN, "subject/appeal-received"),
        (RAVI, "moderator/appeal"),
    ]
    assert "the platform's own checkout" in next(m for m in sent if m.recipient == RAVI).text
    code, out, _ = cli(config, "cases", "show", f"TS-{case_id}", "--json")
    assert code == 0
    shown = json.loads(out)["actions"]
    assert [(a["action"], a["status"]) for a in shown] == [("A-1", "active")]
    assert [appeal["status"] for appeal in shown[0]["appeals"]] == ["open"]
    # A second reply while the appeal is open is an ordinary follow-up, not a second appeal.
    assert not appeal(app, case_id, KARAN, "More context.", clock.now())
    # Somebody else on the subject's thread cannot appeal on their behalf.
    assert not appeal(app, case_id, MEERA, "I appeal too.", clock.now())

    with pytest.raises(EnforcementError, match="another moderator"):
        command(
            app,
            case_id,
            lambda s, c: decide_appeal(app.desk, s, c, ASHA, True, "I was wrong.", clock.now()),
        )
    with pytest.raises(EnforcementError, match="reasoning"):
        command(
            app, case_id, lambda s, c: decide_appeal(app.desk, s, c, RAVI, True, " ", clock.now())
        )
    before = last_id(app)
    summary = command(
        app,
        case_id,
        lambda s, c: decide_appeal(
            app.desk, s, c, RAVI, True, "The link was our own checkout page.", clock.now()
        ),
    )
    assert "A-1 overturned" in summary and "(3)" in summary
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (KARAN, "subject/appeal-decided"),
        (MEERA, "member/restored"),
        (SUNIL, "member/restored"),
    ]
    decided = next(m for m in sent if m.recipient == KARAN)
    assert "the strike is overturned" in decided.text
    assert "The reasons: The link was our own checkout page." in decided.text
    assert "its restrictions are lifted now" in decided.text
    assert "lifted early" in next(m for m in sent if m.recipient == MEERA).text
    with app.sessions() as session:
        action = session.get_one(Action, 1)
        assert action.status is ActionStatus.OVERTURNED
        assert {r.status for r in action.restrictions} == {RestrictionStatus.LIFTED}
        assert session.scalars(select(Appeal.status)).all() == [AppealStatus.OVERTURNED]
    for email in (KARAN, MEERA, SUNIL):
        answer = enforcement(config, email, clock.now(), "--program", "PY101")
        assert answer["restricted"] is False, email
    standing = enforcement(config, KARAN, clock.now())["standing"]
    assert standing["lifetime_strikes"] == 0 and standing["next_step"] == "warning"

    # The lifted restrictions and the overturned strike never come back through the sweeps.
    before = last_id(app)
    run_once(config, datetime(2027, 12, 1, tzinfo=UTC))
    assert outbox(app, before) == []


def test_upheld_appeal_and_late_appeal(app: App, clock: FixedClock) -> None:
    case_id = strike_karan(app, clock)
    late = clock.now() + timedelta(days=15)
    assert not appeal(app, case_id, KARAN, "Too late?", late)
    assert appeal(app, case_id, KARAN, "Please reconsider.", clock.now() + timedelta(days=14))
    before = last_id(app)
    command(
        app,
        case_id,
        lambda s, c: decide_appeal(
            app.desk, s, c, RAVI, False, "The payment link was outside.", clock.now()
        ),
    )
    sent = outbox(app, before)
    assert [(m.recipient, m.template) for m in sent] == [(KARAN, "subject/appeal-decided")]
    assert "the strike stands" in sent[0].text.lower()
    with pytest.raises(EnforcementError, match="no open appeal"):
        command(
            app,
            case_id,
            lambda s, c: decide_appeal(app.desk, s, c, RAVI, True, "again", clock.now()),
        )
    with app.sessions() as session:
        assert session.get_one(Action, 1).status is ActionStatus.ACTIVE
        assert session.scalars(select(Restriction.status)).all() == [RestrictionStatus.ACTIVE] * 3


def test_revoke_corrects_a_mistake_at_once(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    case_id = strike_karan(app, clock)
    with pytest.raises(EnforcementError, match="not an action reference"):
        command(
            app, case_id, lambda s, c: revoke_action(app.desk, s, c, ASHA, "1", "x", clock.now())
        )
    with pytest.raises(EnforcementError, match="not an action of"):
        command(
            app, case_id, lambda s, c: revoke_action(app.desk, s, c, ASHA, "A-9", "x", clock.now())
        )
    before = last_id(app)
    summary = command(
        app,
        case_id,
        lambda s, c: revoke_action(
            app.desk,
            s,
            c,
            ASHA,
            "a-1",
            "Wrong person: the report named another Karan.",
            clock.now(),
        ),
    )
    assert summary == "A-1 revoked: it no longer counts; 3 restriction(s) lifted"
    sent = outbox(app, before)
    assert sorted((m.recipient, m.template) for m in sent) == [
        (KARAN, "subject/revoked"),
        (MEERA, "member/restored"),
        (SUNIL, "member/restored"),
    ]
    assert "Wrong person" in next(m for m in sent if m.recipient == KARAN).text
    assert enforcement(config, KARAN, clock.now())["restricted"] is False
    assert enforcement(config, KARAN, clock.now())["standing"]["lifetime_strikes"] == 0
    with pytest.raises(EnforcementError, match="already revoked"):
        command(
            app, case_id, lambda s, c: revoke_action(app.desk, s, c, RAVI, "A-1", "x", clock.now())
        )
    # The case can now carry the right sanction.
    summary = command(
        app,
        case_id,
        lambda s, c: apply_sanction(app.desk, s, c, ASHA, None, "Shared a link.", clock.now()),
    )
    assert summary.startswith("A-2: warning")


def test_a_reply_to_the_strike_notice_reaches_the_case_and_becomes_an_appeal(
    app: App, clock: FixedClock
) -> None:
    from intake.pipeline import SourceRef
    from tests.mail import make_mail

    case_id = strike_karan(app, clock)
    notice = next(m for m in outbox(app) if m.template == "subject/strike")
    reply_to = notice.headers["Reply-To"].split("<")[1].rstrip(">")
    raw = make_mail(
        sender=KARAN,
        to=reply_to,
        subject=f"Re: {notice.subject}",
        body="I appeal: the link was the platform's own checkout page.",
        in_reply_to=notice.headers["Message-ID"],
    )
    clock.move_to(clock.now() + timedelta(days=1))
    before = last_id(app)
    result = app.pipeline.process(raw, SourceRef(label="test"), clock.now())
    assert result.case_id == case_id and result.inbound_id is not None
    assert result.reason == "appeal, reply by token"
    inbound_id = result.inbound_id
    with app.sessions() as session:
        assert session.get_one(InboundMessage, inbound_id).party is Party.SUBJECT
    # The moderators get the appeal once, not a second follow-up email about the same reply.
    told = outbox(app, before)
    assert {m.template for m in told} == {"moderator/appeal", "subject/appeal-received"}
    assert sorted(m.recipient for m in told if m.template == "moderator/appeal") == sorted(
        app.desk.moderators.addresses
    )
    assert [m.recipient for m in told if m.template == "subject/appeal-received"] == [KARAN]
    # A second call finds it already appealed.
    recorded = command(
        app,
        case_id,
        lambda s, c: str(
            record_appeal(app.desk, s, c, s.get_one(InboundMessage, inbound_id), clock.now())
        ),
    )
    assert recorded == "False"
    with app.sessions() as session:
        appeal_row = session.scalars(select(Appeal)).one()
        assert appeal_row.inbound_id == inbound_id and appeal_row.status is AppealStatus.OPEN
