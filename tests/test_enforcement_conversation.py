"""The enforcement story as conversations: every action is an email, time moves by `run --once`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.models import (
    Action,
    ActionStatus,
    Appeal,
    AppealStatus,
    AuditEvent,
    Case,
    Person,
    Restriction,
    RestrictionStatus,
)
from tests.conftest import MODERATORS
from tests.conversation_kit import (
    Mail,
    MailDesk,
    only,
    open_desk,
    reply,
    report,
    sent_to,
)

ASHA, RAVI = MODERATORS
KARAN = "karan.mentor@example.com"
MEERA = "meera.mentor@example.com"
SUNIL = "sunil.support@example.com"
PRIYA = "priya.student@example.com"
ANIL = "anil.student@example.com"
VIKRAM = "vikram.mentor@example.com"

ROSTER = """program,title,email,name,role
PY101,Python for Beginners,karan.mentor@example.com,Karan Mehta,mentor
PY101,Python for Beginners,meera.mentor@example.com,Meera Iyer,mentor
PY101,Python for Beginners,sunil.support@example.com,Sunil Das,support
DS200,Data Science,meera.mentor@example.com,Meera Iyer,mentor
"""

# The words every sanction notice must carry (DESIGN.md: "a notice missing any element is refused").
ELEMENTS = (
    "Decision:",
    "Scope:",
    "How long:",
    "The facts we relied on:",
    "The rule broken:",
    "How it came to our attention: a report from a member of our community",
    "reviewed this case",
    "Your standing:",
    "reply to this email by",
    "Resources to understand our policies",
    "Case reference: TS-",
)

# The reporter's own words: never in anything the reported person or the program team receives.
PRIYA_WORDS = "Karan told me to send the fee through GPay to his brother instead of the site"
ANIL_WORDS = "he shared a PayPal.me link in the group chat and said bookings there are cheaper"


def at(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path: Path, db_url: str) -> Iterator[MailDesk]:
    """A desk that obeys moderators only with our server's DMARC/DKIM pass, with a roster."""
    opened = open_desk(tmp_path, db_url)
    assert "imported" in opened.import_programs(ROSTER)
    yield opened
    opened.app.engine.dispose()


def new_report(
    desk: MailDesk, sender: str, name: str, words: str, now: datetime
) -> tuple[int, dict[str, Mail]]:
    """A report arrives; returns its case id and the new-case email each moderator got."""
    out = desk.send(
        report(sender, "Mentor wants payment outside the platform", words, name=name, date=now),
        now,
    )
    ack = only(out, "reporter/acknowledgement", sender)
    new_case = {m.recipient: m for m in out if m.template == "moderator/new-case"}
    assert sorted(new_case) == sorted(MODERATORS)
    case_id = int(ack.subject.split("[TS-")[1].split("]")[0])
    return case_id, new_case


def assert_sanction_notice(notice: Mail, *reporter_words: str) -> None:
    for words in ELEMENTS:
        assert words in notice.text, f"{notice.template} lacks {words!r}"
    for secret in (PRIYA, ANIL, "Priya", "Anil", *reporter_words):
        assert secret not in notice.text, f"{notice.template} reveals {secret!r}"
        assert secret.encode() not in notice.raw
    assert notice.reply_to.startswith("mentor4u+")


def actions(desk: MailDesk) -> list[tuple[str, str, str, str]]:
    with desk.sessions() as session:
        return [
            (a.person.email, a.kind.value, a.status.value, a.issued_by)
            for a in session.scalars(select(Action).order_by(Action.id))
        ]


def restrictions(desk: MailDesk, email: str) -> list[tuple[str, str, str | None, str, str]]:
    with desk.sessions() as session:
        person = session.scalars(select(Person).where(Person.email == email)).one()
        return [
            (
                r.scope.value,
                r.kind.value,
                r.program.code if r.program else None,
                r.until.isoformat() if r.until else "",
                r.status.value,
            )
            for r in session.scalars(
                select(Restriction)
                .where(Restriction.person_id == person.id)
                .order_by(Restriction.id)
            )
        ]


def audit_kinds(desk: MailDesk) -> list[str]:
    with desk.sessions() as session:
        return list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))


# --- warning, strike, suspension, program restrictions, time ----------------------------------


def test_warning_then_strike_then_features_return_and_the_strike_stops_counting(
    desk: MailDesk,
) -> None:
    # 1. Priya reports Karan; Asha names him, the rule and the program, and warns him.
    t0 = at(2027, 1, 4)
    first, new_case = new_report(desk, PRIYA, "Priya Sharma", f"Hello, {PRIYA_WORDS}.", t0)
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/program PY101\n"
            "/warn Asked a student on 2 January to pay for sessions outside eCareerMentor.",
        ),
        at(2027, 1, 4, 9, 30),
    )
    assert sent_to(out) == [
        (ASHA, "moderator/transcript"),
        (KARAN, "subject/warning"),
        (PRIYA, "reporter/outcome"),
    ]
    transcript = only(out, "moderator/transcript")
    assert "Results of your message of 04 January 2027, 09:30 UTC" in transcript.text
    assert "Applied: 4 command(s)." in transcript.text
    assert "A-1: warning of karan.mentor@example.com in effect" in transcript.text
    warning = only(out, "subject/warning", KARAN)
    assert_sanction_notice(warning, PRIYA_WORDS, "GPay")
    assert f"[TS-{first}]" in warning.subject
    assert "Asked a student on 2 January to pay for sessions outside eCareerMentor." in (
        warning.text
    )
    assert "Don't direct eCareerMentor's students away from the eCareerMentor platform" in (
        warning.text
    )
    assert "counts until 4 July 2027, 09:30 UTC" in warning.text
    assert "the next step is a strike" in warning.text
    outcome = only(out, "reporter/outcome", PRIYA)
    assert "action taken" in outcome.text
    for detail in (KARAN, "Karan", "warning", "Asked a student"):
        assert detail not in outcome.text
    assert actions(desk) == [(KARAN, "warning", "active", ASHA)]
    answer = desk.enforcement(KARAN, at(2027, 1, 5))
    assert (answer["restricted"], answer["banned"]) == (False, False)
    assert answer["standing"]["next_step"] == "strike"
    assert len(answer["standing"]["active_warnings"]) == 1

    # 2. A month later Anil reports Karan again: /escalate is a strike with a suspension, and
    # the rest of the PY101 team gets a program restriction (not a strike).
    t1 = at(2027, 2, 1)
    second, new_case = new_report(desk, ANIL, "Anil Kumar", f"Hi, {ANIL_WORDS}.", t1)
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/program PY101\n"
            "/escalate Posted a payment link for lessons outside eCareerMentor on 30 January.",
        ),
        t1,
    )
    assert sent_to(out) == [
        (ANIL, "reporter/outcome"),
        (ASHA, "moderator/transcript"),
        (KARAN, "subject/strike"),
        (MEERA, "member/program-restriction"),
        (SUNIL, "member/program-restriction"),
    ]
    assert "program restrictions for 2 member(s)" in only(out, "moderator/transcript").text
    strike = only(out, "subject/strike", KARAN)
    assert_sanction_notice(strike, ANIL_WORDS, "PayPal.me", PRIYA_WORDS)
    assert "until 1 March 2027, 09:00 UTC" in strike.text
    assert "until 1 August 2027" in strike.text
    assert "the next step is a permanent ban" in strike.text
    for member in (MEERA, SUNIL):
        notice = only(out, "member/program-restriction", member)
        assert_sanction_notice(notice, ANIL_WORDS, KARAN, "Karan", "payment link")
        assert "This is a program restriction, not a strike" in notice.text
        assert "Scope: program PY101 only" in notice.text
    assert restrictions(desk, KARAN) == [
        ("account", "suspension", None, "2027-03-01T09:00:00+00:00", "active")
    ]
    for member in (MEERA, SUNIL):
        assert restrictions(desk, member) == [
            ("program", "program-restriction", "PY101", "2027-03-01T09:00:00+00:00", "active")
        ]
    answer = desk.enforcement(KARAN, t1)
    assert answer["restricted"] is True
    assert [(r["scope"], r["kind"], r["case"]) for r in answer["restrictions"]] == [
        ("account", "suspension", f"TS-{second}")
    ]
    assert answer["standing"]["next_step"] == "ban"
    meera = desk.enforcement(MEERA, t1, "--program", "PY101")
    assert meera["restricted"] is True
    assert meera["standing"]["lifetime_strikes"] == 0 and meera["standing"]["active_strikes"] == []
    assert desk.enforcement(MEERA, t1, "--program", "DS200")["restricted"] is False

    # 3. A minute before the month is up nothing changes; at the month features come back,
    # exactly once however often the worker runs.
    assert desk.run(at(2027, 3, 1, 8, 59)) == []
    assert desk.enforcement(KARAN, at(2027, 3, 1, 8, 59))["restricted"] is True
    out = desk.run(at(2027, 3, 1))
    assert sent_to(out) == [
        (KARAN, "subject/restored"),
        (MEERA, "member/restored"),
        (SUNIL, "member/restored"),
    ]
    assert all("restored" in m.text for m in out)
    assert desk.run(at(2027, 3, 1)) == []
    assert desk.run(at(2027, 3, 2)) == []
    assert {r[4] for who in (KARAN, MEERA, SUNIL) for r in restrictions(desk, who)} == {"ended"}
    assert desk.enforcement(KARAN, at(2027, 3, 1))["restricted"] is False
    assert desk.enforcement(SUNIL, at(2027, 3, 1), "--program", "PY101")["restricted"] is False
    assert desk.enforcement(KARAN, at(2027, 3, 1))["standing"]["next_step"] == "ban"

    # 4. Six calendar months on, the warning and then the strike stop counting.
    out = desk.run(at(2027, 7, 5))
    assert sent_to(out) == [(KARAN, "subject/expired")]
    assert "Your warning A-1" in out[0].text
    out = desk.run(at(2027, 8, 1))
    assert sent_to(out) == [(KARAN, "subject/expired")]
    assert "Your strike A-2" in out[0].text
    assert "no warnings or strikes count against you now" in out[0].text
    assert "the next step is a warning" in out[0].text
    assert desk.run(at(2027, 8, 2)) == []
    answer = desk.enforcement(KARAN, at(2027, 8, 1))
    assert answer["standing"]["active_strikes"] == []
    assert answer["standing"]["lifetime_strikes"] == 1
    assert answer["standing"]["next_step"] == "warning"
    assert [a[2] for a in actions(desk)] == ["expired", "expired"]
    kinds = audit_kinds(desk)
    assert kinds.count("restriction.ended") == 3 and kinds.count("action.expired") == 2

    # Over the whole story, nothing the mentor or the program team received names a reporter
    # or repeats a report; the reporters never learned anything about the mentor.
    for mail in desk.history:
        if mail.recipient in (KARAN, MEERA, SUNIL):
            for secret in (PRIYA, ANIL, "Priya", "Anil", PRIYA_WORDS, ANIL_WORDS, "GPay"):
                assert secret.encode() not in mail.raw, (mail.template, secret)
        if mail.recipient in (PRIYA, ANIL):
            for secret in (KARAN, "Karan", "strike", "warning", "suspen", "PY101"):
                assert secret not in mail.text, (mail.template, secret)
    assert sorted({m.template for m in desk.history if m.recipient in (PRIYA, ANIL)}) == [
        "reporter/acknowledgement",
        "reporter/outcome",
    ]


# --- a ban needs a second moderator ----------------------------------------------------------


def test_violation_while_a_strike_counts_is_a_ban_only_a_second_moderator_approves(
    desk: MailDesk,
) -> None:
    _, new_case = new_report(
        desk, PRIYA, "Priya Sharma", f"{VIKRAM} keeps abusing me.", at(2027, 1, 4)
    )
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {VIKRAM}\n/category harassment\n/severity high\n"
            "/strike Sent abusive messages to a student on 1 January.",
        ),
        at(2027, 1, 4, 10),
    )
    assert only(out, "subject/strike", VIKRAM)

    second, new_case = new_report(
        desk, ANIL, "Anil Kumar", f"{VIKRAM} threatened me in a session.", at(2027, 4, 1)
    )
    out = desk.send(
        reply(new_case[ASHA], ASHA, f"/subject {VIKRAM}\n/category harassment\n"
              "/escalate Threatened a student during a live session on 31 March."),
        at(2027, 4, 1, 10),
    )  # fmt: skip
    assert sent_to(out) == [(ASHA, "moderator/transcript"), (RAVI, "moderator/ban-pending")]
    assert "ban of vikram.mentor@example.com proposed" in only(out, "moderator/transcript").text
    pending = only(out, "moderator/ban-pending", RAVI)
    assert f"TS-{second}" in pending.subject
    answer = desk.enforcement(VIKRAM, at(2027, 4, 1, 10))
    assert (answer["banned"], answer["standing"]["ban_pending"]) == (False, True)

    # The proposer cannot approve their own ban: nothing is applied and the transcript says why.
    out = desk.send(reply(new_case[ASHA], ASHA, "/approve"), at(2027, 4, 1, 11))
    assert sent_to(out) == [(ASHA, "moderator/transcript")]
    assert "Nothing applied" in out[0].text and "second moderator" in out[0].text
    assert [a[1:3] for a in actions(desk)] == [("strike", "active"), ("ban", "pending")]
    assert desk.enforcement(VIKRAM, at(2027, 4, 1, 11))["banned"] is False

    # Ravi approves by replying to the approval request he was sent.
    out = desk.send(reply(pending, RAVI, "/approve"), at(2027, 4, 2))
    assert sent_to(out) == [
        (ANIL, "reporter/outcome"),
        (RAVI, "moderator/transcript"),
        (VIKRAM, "subject/ban"),
    ]
    ban = only(out, "subject/ban", VIKRAM)
    assert_sanction_notice(ban, "threatened me")
    assert "permanently banned" in ban.text
    assert "How long: permanently, from 2 April 2027, 09:00 UTC." in ban.text
    with desk.sessions() as session:
        ban_row = session.scalars(select(Action).where(Action.kind == "ban")).one()
        assert (ban_row.status, ban_row.issued_by, ban_row.decided_by) == (
            ActionStatus.ACTIVE,
            ASHA,
            RAVI,
        )
    answer = desk.enforcement(VIKRAM, at(2030, 1, 1))
    assert (answer["banned"], answer["restricted"]) == (True, True)
    assert answer["standing"]["next_step"] is None


# --- an appeal decided by another moderator --------------------------------------------------


def test_appeal_by_reply_is_decided_by_another_moderator_and_lifts_everything(
    desk: MailDesk,
) -> None:
    case_id, new_case = new_report(desk, PRIYA, "Priya Sharma", PRIYA_WORDS, at(2027, 1, 4))
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/program PY101\n/severity high\n"
            "/strike Asked a student to pay for sessions outside eCareerMentor.",
        ),
        at(2027, 1, 4, 10),
    )
    strike = only(out, "subject/strike", KARAN)
    assert len([m for m in out if m.template == "member/program-restriction"]) == 2

    # Karan replies to the notice: an appeal, recorded; he is told and both moderators get it.
    appeal_text = "I never asked for money outside the platform; the student misunderstood me."
    out = desk.send(reply(strike, KARAN, appeal_text, auth=False), at(2027, 1, 6))
    assert sent_to(out) == [
        (ASHA, "moderator/appeal"),
        (KARAN, "subject/appeal-received"),
        (RAVI, "moderator/appeal"),
    ]
    assert appeal_text in only(out, "moderator/appeal", RAVI).text
    with desk.sessions() as session:
        [appeal] = session.scalars(select(Appeal)).all()
        assert (appeal.status, appeal.case_id) == (AppealStatus.OPEN, case_id)
    ravi_appeal = only(out, "moderator/appeal", RAVI)
    asha_appeal = only(out, "moderator/appeal", ASHA)

    # Asha issued the strike: her /overturn is refused and changes nothing.
    out = desk.send(
        reply(asha_appeal, ASHA, "/overturn The student withdrew the claim."), at(2027, 1, 7)
    )
    assert sent_to(out) == [(ASHA, "moderator/transcript")]
    assert "Nothing applied" in out[0].text
    assert "its appeal must be decided by another moderator" in out[0].text
    assert desk.enforcement(KARAN, at(2027, 1, 7))["restricted"] is True
    assert desk.enforcement(MEERA, at(2027, 1, 7), "--program", "PY101")["restricted"] is True

    # Ravi overturns it: the strike stops counting and every restriction lifts at once.
    reasons = "The chat log shows Karan pointed the student to the platform's own checkout."
    out = desk.send(reply(ravi_appeal, RAVI, f"/overturn {reasons}"), at(2027, 1, 8))
    assert sent_to(out) == [
        (KARAN, "subject/appeal-decided"),
        (MEERA, "member/restored"),
        (RAVI, "moderator/transcript"),
        (SUNIL, "member/restored"),
    ]
    decided = only(out, "subject/appeal-decided", KARAN)
    assert reasons in decided.text
    assert "overturn" in decided.text.lower()
    assert actions(desk) == [(KARAN, "strike", "overturned", ASHA)]
    with desk.sessions() as session:
        appeal = session.scalars(select(Appeal)).one()
        assert (appeal.status, appeal.decided_by) == (AppealStatus.OVERTURNED, RAVI)
        statuses = set(session.scalars(select(Restriction.status)))
    assert RestrictionStatus.ACTIVE not in statuses
    for who, extra in ((KARAN, ()), (MEERA, ("--program", "PY101")), (SUNIL, ())):
        assert desk.enforcement(who, at(2027, 1, 8), *extra)["restricted"] is False
    answer = desk.enforcement(KARAN, at(2027, 1, 8))
    assert answer["standing"]["lifetime_strikes"] == 0
    assert answer["standing"]["next_step"] == "warning"
    # Nothing is restored a second time when the suspension would have ended.
    assert desk.run(at(2027, 2, 4, 10)) == []

    # The moderator whose strike was overturned cannot put a sanction back on the same case;
    # the one who decided the appeal may replace it with a lesser step.
    out = desk.send(
        reply(new_case[ASHA], ASHA, "/warn Asked a student to pay outside eCareerMentor."),
        at(2027, 2, 5),
    )
    assert sent_to(out) == [(ASHA, "moderator/transcript")]
    assert "A-1 was overturned on appeal by ravi.moderator@ecareermentor.in" in out[0].text
    assert actions(desk) == [(KARAN, "strike", "overturned", ASHA)]
    out = desk.send(
        reply(ravi_appeal, RAVI, "/warn Mentioned paying outside eCareerMentor; be clearer."),
        at(2027, 2, 5, 10),
    )
    assert sent_to(out) == [(KARAN, "subject/warning"), (RAVI, "moderator/transcript")]
    assert actions(desk)[-1] == (KARAN, "warning", "active", RAVI)


# --- an ongoing history ----------------------------------------------------------------------


def test_three_strikes_in_24_months_make_escalate_a_ban_even_when_they_expired(
    desk: MailDesk,
) -> None:
    dates = [at(2027, 1, 4), at(2027, 8, 2), at(2028, 3, 6)]
    for number, moment in enumerate(dates, start=1):
        _, new_case = new_report(desk, PRIYA, "Priya Sharma", f"{VIKRAM} spammed me.", moment)
        out = desk.send(
            reply(
                new_case[RAVI],
                RAVI,
                f"/subject {VIKRAM}\n/category spam\n/severity high\n"
                f"/strike Sent unsolicited offers to students, occasion {number}.",
            ),
            moment,
        )
        assert only(out, "subject/strike", VIKRAM)
        desk.run(moment.replace(day=moment.day + 1))
    # By now two of the three strikes have expired; the next step is still a ban.
    moment = at(2028, 10, 2)
    desk.run(moment)
    answer = desk.enforcement(VIKRAM, moment)
    assert answer["standing"]["active_strikes"] == []
    assert answer["standing"]["lifetime_strikes"] == 3
    assert answer["standing"]["next_step"] == "ban"
    _, new_case = new_report(desk, PRIYA, "Priya Sharma", f"{VIKRAM} spammed again.", moment)
    out = desk.send(
        reply(new_case[RAVI], RAVI, f"/subject {VIKRAM}\n/category spam\n/escalate More offers."),
        moment,
    )
    assert sent_to(out) == [(ASHA, "moderator/ban-pending"), (RAVI, "moderator/transcript")]
    assert "ban of vikram.mentor@example.com proposed" in out[1].text
    assert [a[1:3] for a in actions(desk)][-1] == ("ban", "pending")


# --- all or nothing --------------------------------------------------------------------------


def test_half_valid_block_with_a_strike_missing_its_facts_applies_nothing(
    desk: MailDesk,
) -> None:
    case_id, new_case = new_report(desk, PRIYA, "Priya Sharma", PRIYA_WORDS, at(2027, 1, 4))
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/note Second report this week.\n/strike",
        ),
        at(2027, 1, 4, 10),
    )
    assert sent_to(out) == [(ASHA, "moderator/transcript")]
    text = out[0].text
    assert "Nothing applied: 1 error(s)" in text
    assert "/strike needs TEXT: the facts relied on" in text
    with desk.sessions() as session:
        case = session.get_one(Case, case_id)
        assert (case.subject_id, case.category) == (None, None)
    kinds = audit_kinds(desk)
    assert "case.note" not in kinds and "commands.applied" not in kinds
    assert "commands.rejected" in kinds
    assert actions(desk) == []


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (
            "/warn As priya.student@EXAMPLE.com told us, he asked for payment off-platform.",
            f"the facts name the reporter ({PRIYA})",
        ),
        (
            "/warn Asked   priya sharma to pay him outside eCareerMentor.",
            "the facts name the reporter (Priya Sharma)",
        ),
        (
            "/message Priya Sharma has told us about your payment requests.",
            "the message would name the reporter (Priya Sharma)",
        ),
    ],
    ids=["address-in-facts", "name-in-facts", "name-in-message"],
)
def test_words_naming_the_reporter_are_never_sent_to_the_reported_person(
    desk: MailDesk, block: str, error: str
) -> None:
    _, new_case = new_report(desk, PRIYA, "Priya Sharma", PRIYA_WORDS, at(2027, 1, 4))
    out = desk.send(
        reply(new_case[ASHA], ASHA, f"/subject {KARAN}\n/category off-platform\n{block}"),
        at(2027, 1, 4, 10),
    )
    assert sent_to(out) == [(ASHA, "moderator/transcript")]
    assert error in out[0].text
    assert "Nothing applied: the enforcement service refused a command." in out[0].text
    assert actions(desk) == []
    assert all(mail.recipient != KARAN for mail in desk.history)


def test_unauthenticated_moderator_reply_commands_nothing(desk: MailDesk) -> None:
    _, new_case = new_report(desk, PRIYA, "Priya Sharma", PRIYA_WORDS, at(2027, 1, 4))
    out = desk.send(
        reply(
            new_case[ASHA],
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/warn Asked for payment off-platform.",
            auth=False,
        ),
        at(2027, 1, 4, 10),
    )
    assert sent_to(out) == [(ASHA, "moderator/refused")]
    assert actions(desk) == []
    assert "commands.refused" in audit_kinds(desk)
