"""Conversations through the whole pipeline: report, commands, transcript and party mail."""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import (
    Case,
    CaseStatus,
    Detection,
    Disposition,
    InboundMessage,
    OutboxMessage,
    Party,
    Person,
)
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App, build_app
from scheduler.worker import run_once
from tests.conftest import SettingsFactory
from tests.desk_helpers import (
    ASHA,
    KARAN,
    PASS,
    PRIYA,
    RAVI,
    TRUSTED,
    body_of,
    case_row,
    events,
    feed,
    moderator_reply,
    open_report,
    outbox,
)
from tests.mail import make_mail


@pytest.fixture
def desk(deployed_desk: App) -> App:
    return deployed_desk


def later(clock: FixedClock, minutes: int = 5) -> None:
    clock.move_to(clock.now() + timedelta(minutes=minutes))


def test_commands_are_applied_with_transcript_and_party_mail(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    later(clock)
    result = feed(
        desk,
        moderator_reply(
            desk,
            case_id,
            "/assign me\n"
            f"/subject {KARAN}\n"
            "/category off-platform\n"
            "/severity high\n"
            "/note Asked for UPI payments twice;\n"
            "screenshots are in the follow-up.\n"
            "/reply Thank you, we are looking into it.\n"
            "Could you send the date of the session?",
        ),
        clock.now(),
    )
    assert result.outcome is Outcome.PROCESSED
    assert result.disposition is Disposition.COMMAND
    case = case_row(desk, case_id)
    assert case.assignee == ASHA
    assert case.category == "off-platform"
    assert case.severity == "high"
    assert case.status is CaseStatus.OPEN
    assert case.last_moderator_activity_at == clock.now()
    with desk.sessions() as session:
        subject = session.get(Person, case.subject_id)
        assert subject is not None and subject.email == KARAN
    notes = events(desk, "case.note")
    assert [e.detail["text"] for e in notes] == [
        "Asked for UPI payments twice;\nscreenshots are in the follow-up."
    ]
    # The transcript goes to the commanding moderator only.
    transcripts = outbox(desk, template="moderator/transcript")
    assert [row.recipient for row in transcripts] == [ASHA]
    text = body_of(transcripts[0])
    assert "Applied: 6 command(s)." in text
    assert "> /assign me\n    ok: assigned to asha.moderator@ecareermentor.in" in text
    assert "> /category off-platform\n    ok: rule off-platform" in text
    assert "reported:  karan.mentor@example.com" in text
    assert "line(s) of the quoted original message" in text
    assert transcripts[0].party is Party.MODERATOR
    # The reporter gets the moderator's words on the reporter's own thread.
    replies = outbox(desk, template="reporter/reply")
    assert [row.recipient for row in replies] == [PRIYA]
    reply_text = body_of(replies[0])
    assert (
        "Thank you, we are looking into it.\nCould you send the date of the session?" in reply_text
    )
    assert replies[0].party is Party.REPORTER
    assert b"mentor4u+" + str(case_id).encode() + b"r" in replies[0].raw
    assert KARAN not in reply_text
    assert f"[TS-{case_id}]" in replies[0].subject
    ack = outbox(desk, recipient=PRIYA, template="reporter/acknowledgement")[0]
    assert f"In-Reply-To: {ack.message_id}".encode() in replies[0].raw  # her own thread
    assert [e.detail["lines"][0]["status"] for e in events(desk, "commands.applied")] == ["ok"]


def test_message_to_the_reported_person_never_reveals_the_reporter(
    desk: App, clock: FixedClock
) -> None:
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(
            desk,
            case_id,
            f"/subject {KARAN}\n/message Please keep all payments on eCareerMentor.",
        ),
        clock.now(),
    )
    sent = outbox(desk, recipient=KARAN)
    assert [row.template for row in sent] == ["subject/message"]
    raw = sent[0].raw.decode()
    assert "Please keep all payments on eCareerMentor." in body_of(sent[0])
    assert PRIYA not in raw and "Priya" not in raw
    assert "WhatsApp" not in raw and "pay on" not in raw
    assert f"mentor4u+{case_id}s" in raw  # the subject's own thread
    assert "Cc:" not in raw
    # Nobody is copied across parties.
    assert all(row.recipient != PRIYA for row in outbox(desk, template="subject/message"))


def test_close_no_violation_tells_the_reporter_and_reopen(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(desk, case_id, "/close no-violation Shared LinkedIn only"),
        clock.now(),
    )
    case = case_row(desk, case_id)
    assert case.status is CaseStatus.CLOSED
    assert case.resolution == "no-violation"
    outcome = outbox(desk, template="reporter/outcome")
    assert [row.recipient for row in outcome] == [PRIYA]
    text = body_of(outcome[0])
    assert "found no violation" in text
    assert "Shared LinkedIn only" not in text  # the closing TEXT is internal
    later(clock)
    feed(desk, moderator_reply(desk, case_id, "/reopen\n/assign me"), clock.now())
    case = case_row(desk, case_id)
    assert case.status is CaseStatus.OPEN
    assert case.closed_at is None
    assert case.assignee == ASHA


def test_half_valid_block_applies_nothing(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(
            desk,
            case_id,
            "/assign me\n/reply We are on it.\n/category bribery\n/severity high",
        ),
        clock.now(),
    )
    case = case_row(desk, case_id)
    assert case.assignee is None
    assert case.category is None
    assert case.severity is None
    assert outbox(desk, template="reporter/reply") == []
    assert events(desk, "commands.applied") == []
    [rejected] = events(desk, "commands.rejected")
    assert [line["status"] for line in rejected.detail["lines"]] == [
        "valid",
        "valid",
        "error",
        "valid",
    ]
    [transcript] = outbox(desk, template="moderator/transcript")
    text = body_of(transcript)
    assert "Nothing applied: 1 error(s)" in text
    assert "unknown rule 'bribery'" in text
    assert "assignee:  nobody" in text


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (f"/subject {KARAN}\n/category spam\n/strike", "/strike needs TEXT: the facts relied on"),
        ("/warn He asked for payment on WhatsApp", "has no reported person yet"),
        (f"/subject {KARAN}\n/ban Repeated", "has no rule yet"),
        ("/uphold", "/uphold needs TEXT"),
        ("/revoke strike-3", "/revoke needs the ACTION and TEXT"),
        ("/approve now please", "/approve takes no argument"),
        ("/reopen", "/reopen is not allowed while"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/assign someone@example.com", "someone@example.com is not a moderator"),
        ("/merge TS-999", "no case TS-999"),
        ("/close\n/assign me", "/assign is not allowed while"),
        ("/program NOPE", "no program 'NOPE'"),
        (f"/subject {PRIYA}", "cannot be the reported person"),
    ],
)
def test_invalid_blocks_are_refused_whole(
    desk: App, clock: FixedClock, block: str, error: str
) -> None:
    case_id = open_report(desk, clock.now())
    before = case_row(desk, case_id)
    feed(desk, moderator_reply(desk, case_id, block), clock.now())
    after = case_row(desk, case_id)
    assert (after.status, after.subject_id, after.category, after.assignee) == (
        before.status,
        before.subject_id,
        before.category,
        before.assignee,
    )
    [transcript] = outbox(desk, template="moderator/transcript")
    assert error in body_of(transcript)
    assert "Nothing applied" in body_of(transcript)
    assert events(desk, "commands.applied") == []


def test_plain_text_is_kept_as_a_note(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(desk, case_id, "Called the reporter; she will send screenshots."),
        clock.now(),
    )
    [note] = events(desk, "case.note")
    assert note.detail["text"] == "Called the reporter; she will send screenshots."
    assert note.actor == ASHA
    [transcript] = outbox(desk, template="moderator/transcript")
    assert "kept as an internal note" in body_of(transcript)


def test_text_before_commands_is_unprocessed(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(desk, case_id, "Hi team,\n\n/assign me\n\nThanks\nAsha\n-- \nAsha M"),
        clock.now(),
    )
    assert case_row(desk, case_id).assignee == ASHA
    text = body_of(outbox(desk, template="moderator/transcript")[0])
    assert "- Unprocessed" in text and "    Hi team," in text
    assert "your signature" in text


def test_help_lists_every_command(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(desk, moderator_reply(desk, case_id, "/help"), clock.now())
    text = body_of(outbox(desk, template="moderator/transcript")[0])
    for usage in (
        "/assign me|EMAIL",
        "/close [no-violation|duplicate|resolved] [TEXT]",
        "/revoke ACTION TEXT",
        "/merge TS-n",
        "/message TEXT",
    ):
        assert usage in text


def test_merge_folds_a_case_into_another(desk: App, clock: FixedClock) -> None:
    first = open_report(desk, clock.now())
    later(clock)
    second = open_report(desk, clock.now(), body="Karan asked me for money on WhatsApp too.")
    feed(desk, moderator_reply(desk, second, f"/merge TS-{first}"), clock.now())
    case = case_row(desk, second)
    assert case.status is CaseStatus.MERGED
    assert case.merged_into_id == first
    later(clock)
    feed(
        desk, moderator_reply(desk, second, "/assign me", message_id="<again@client>"), clock.now()
    )
    assert case_row(desk, second).assignee is None
    assert "is not allowed while" in body_of(outbox(desk, template="moderator/transcript")[-1])


def test_same_message_id_is_applied_once(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    raw = moderator_reply(desk, case_id, "/reply We are on it.", message_id="<once@client.example>")
    first = feed(desk, raw, clock.now())
    later(clock)
    second = feed(desk, raw, clock.now())
    assert first.outcome is Outcome.PROCESSED
    assert second.outcome is Outcome.DUPLICATE
    assert len(outbox(desk, template="reporter/reply")) == 1
    assert len(events(desk, "commands.applied")) == 1
    assert len(outbox(desk, template="moderator/transcript")) == 1


def test_resent_copy_with_a_new_message_id_is_not_applied_again(
    desk: App, clock: FixedClock
) -> None:
    case_id = open_report(desk, clock.now())
    feed(desk, moderator_reply(desk, case_id, "/reply We are on it."), clock.now())
    later(clock)
    feed(desk, moderator_reply(desk, case_id, "/reply We are on it."), clock.now())
    assert len(outbox(desk, template="reporter/reply")) == 1
    assert len(events(desk, "commands.applied")) == 1
    assert len(events(desk, "commands.replayed")) == 1
    transcripts = outbox(desk, template="moderator/transcript")
    assert len(transcripts) == 2
    assert "already applied" in body_of(transcripts[1])
    # A different block is applied as usual; the first one is still recognised after it.
    feed(desk, moderator_reply(desk, case_id, "/reply One more thing."), clock.now())
    assert len(outbox(desk, template="reporter/reply")) == 2
    later(clock)
    feed(desk, moderator_reply(desk, case_id, "/reply We are on it."), clock.now())
    assert len(outbox(desk, template="reporter/reply")) == 2
    # Days later the same words are a new decision, not a copy.
    clock.move_to(clock.now() + timedelta(days=2))
    feed(desk, moderator_reply(desk, case_id, "/reply We are on it."), clock.now())
    assert len(outbox(desk, template="reporter/reply")) == 3


# --- who may command ---------------------------------------------------------------------------


def assert_refused(desk: App, case_id: int, told: str | None) -> None:
    case = case_row(desk, case_id)
    assert case.assignee is None
    assert events(desk, "commands.applied") == []
    assert len(events(desk, "commands.refused")) == 1
    assert outbox(desk, template="moderator/transcript") == []
    refused = outbox(desk, template="moderator/refused")
    assert [row.recipient for row in refused] == ([told] if told else [])
    with desk.sessions() as session:
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.from_address == (told or ASHA))
        ).first()
        if told:
            assert row is not None and row.disposition is Disposition.REJECTED


def test_authenticated_moderator_is_obeyed(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    dkim_only = f"{TRUSTED}; dkim=pass header.d=ecareermentor.in header.s=mail; spf=neutral"
    feed(desk, moderator_reply(desk, case_id, "/assign me", auth=(dkim_only,)), clock.now())
    assert case_row(desk, case_id).assignee == ASHA


@pytest.mark.parametrize(
    "auth",
    [
        (),
        (f"{TRUSTED}; dmarc=fail header.from=ecareermentor.in; dkim=fail",),
        (f"{TRUSTED}; dkim=pass header.d=attacker.example; dmarc=none",),
        ("mx.attacker.example; dmarc=pass header.from=ecareermentor.in",),
        (f"{TRUSTED}; none",),
    ],
    ids=["missing", "dmarc-fail", "unaligned-dkim", "untrusted-server", "none"],
)
def test_unauthenticated_moderator_is_refused(
    desk: App, clock: FixedClock, auth: tuple[str, ...]
) -> None:
    case_id = open_report(desk, clock.now())
    feed(desk, moderator_reply(desk, case_id, "/assign me", auth=auth), clock.now())
    assert_refused(desk, case_id, ASHA)
    [event] = events(desk, "commands.refused")
    assert "not authenticated" in event.detail["reason"]
    assert "not authenticated" in body_of(outbox(desk, template="moderator/refused")[0])


def test_forged_pass_below_our_servers_fail_is_ignored(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    raw = moderator_reply(
        desk,
        case_id,
        "/assign me",
        auth=(f"{TRUSTED}; dmarc=fail header.from=ecareermentor.in",),
    )
    # The sender wrote a "pass" into its own message; our server's Received and result sit above.
    head, _, rest = raw.partition(b"\r\n")
    forged = (
        head + b"\r\nReceived: from attacker.example by mx.ecareermentor.in\r\n"
        b"Authentication-Results: mx.ecareermentor.in; dmarc=pass header.from=ecareermentor.in\r\n"
        + rest
    )
    feed(desk, forged, clock.now())
    assert_refused(desk, case_id, ASHA)


def test_spoofed_from_with_another_moderators_token_is_refused(
    desk: App, clock: FixedClock
) -> None:
    case_id = open_report(desk, clock.now())
    # Ravi's address in From, replying through the address issued to Asha.
    feed(desk, moderator_reply(desk, case_id, "/assign me", sender=RAVI), clock.now())
    assert_refused(desk, case_id, RAVI)
    [event] = events(desk, "commands.refused")
    assert "reply address issued to this moderator" in event.detail["reason"]


def test_mangled_token_never_matches(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    sent = next(iter(outbox(desk, recipient=ASHA, template="moderator/new-case")))
    from tests.desk_helpers import reply_to_of

    good = reply_to_of(sent)
    local, _, domain = good.partition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    other_case = local.replace(f"+{case_id}m", f"+{case_id + 1}m")
    for bad in (f"{flipped}@{domain}", f"{other_case}@{domain}"):
        feed(
            desk,
            moderator_reply(desk, case_id, "/assign me", to=bad, thread=False),
            clock.now(),
        )
        later(clock)
    assert case_row(desk, case_id).assignee is None
    assert events(desk, "commands.applied") == []
    reasons = [e.detail["reason"] for e in events(desk, "commands.refused")]
    assert len(reasons) == 2  # matched by the subject tag only, which cannot command
    assert all("did not come back through a reply address" in r for r in reasons)


def test_stranger_with_a_moderator_token_cannot_command(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    result = feed(
        desk,
        moderator_reply(desk, case_id, "/assign me", sender="mallory@example.net", auth=()),
        clock.now(),
    )
    assert result.case_id != case_id  # not routed to the case at all
    assert case_row(desk, case_id).assignee is None
    assert events(desk, "commands.applied") == []


def test_not_required_authentication_is_configurable(
    make_settings: SettingsFactory, sqlite_url: str, clock: FixedClock
) -> None:
    app = build_app(make_settings(sqlite_url), migrate=True)  # require_authenticated = false
    try:
        case_id = open_report(app, clock.now())
        feed(app, moderator_reply(app, case_id, "/assign me", auth=()), clock.now())
        assert case_row(app, case_id).assignee == ASHA
    finally:
        app.engine.dispose()


# --- party threads -------------------------------------------------------------------------------


def test_reporter_follow_up_tells_the_moderators_only(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    ack = outbox(desk, recipient=PRIYA, template="reporter/acknowledgement")[0]
    from tests.desk_helpers import reply_to_of

    later(clock)
    result = feed(
        desk,
        make_mail(PRIYA, f"Re: {ack.subject}", "He also sent his UPI id.", to=reply_to_of(ack)),
        clock.now(),
    )
    assert result.case_id == case_id
    assert result.disposition is Disposition.FOLLOW_UP
    follow_ups = outbox(desk, template="moderator/follow-up")
    assert sorted(row.recipient for row in follow_ups) == sorted([ASHA, RAVI])
    assert outbox(desk, template="moderator/transcript") == []


def test_new_case_email_shows_history_of_the_mentioned_person(desk: App, clock: FixedClock) -> None:
    first = open_report(desk, clock.now())
    feed(desk, moderator_reply(desk, first, f"/subject {KARAN}"), clock.now())
    later(clock)
    second = open_report(desk, clock.now(), body=f"{KARAN} asked me to pay on WhatsApp too.")
    new_case = [
        row
        for row in outbox(desk, recipient=ASHA, template="moderator/new-case")
        if row.case_id == second
    ]
    text = body_of(new_case[0])
    assert f"{KARAN}: 1 case(s) about them" in text
    assert f"OPEN about them: TS-{first}" in text
    assert "/assign me|EMAIL" in text  # the cheat-sheet


# --- all or nothing when the enforcement service refuses while applying ---------------------


def test_enforcement_refusal_rolls_back_the_whole_block(
    desk: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for the enforcement service that writes, then refuses: nothing may remain."""
    from casework import enforcement
    from casework.audit import record_event

    calls: list[tuple[str, str | None, str]] = []

    def refuse(
        desk_: object,
        session: object,
        case: object,
        moderator: str,
        step: object,
        facts: str,
        now: object,
    ) -> str:
        calls.append((moderator, None if step is None else str(step), facts))
        record_event(session, clock.now(), "sanction.half-done", case_id=case_id)  # type: ignore[arg-type]
        raise enforcement.EnforcementError("a warning is already active on this case")

    monkeypatch.setattr(enforcement, "apply_sanction", refuse)
    case_id = open_report(desk, clock.now())
    feed(
        desk,
        moderator_reply(
            desk,
            case_id,
            f"/assign me\n/subject {KARAN}\n/category off-platform\n/reply Thanks.\n"
            "/warn Asked for payment on WhatsApp on 2 January.",
        ),
        clock.now(),
    )
    assert calls == [(ASHA, "warning", "Asked for payment on WhatsApp on 2 January.")]
    case = case_row(desk, case_id)
    assert (case.assignee, case.subject_id, case.category) == (None, None, None)
    assert outbox(desk, template="reporter/reply") == []
    assert events(desk, "sanction.half-done") == []
    assert events(desk, "case.assigned") == []
    assert events(desk, "commands.applied") == []
    [rejected] = events(desk, "commands.rejected")
    assert [line["status"] for line in rejected.detail["lines"]] == [
        "not applied",
        "not applied",
        "not applied",
        "not applied",
        "error",
    ]
    text = body_of(outbox(desk, template="moderator/transcript")[0])
    assert "a warning is already active on this case" in text
    assert "Nothing applied: the enforcement service refused a command." in text
    with desk.sessions() as session:
        assert session.scalars(select(Person).where(Person.email == KARAN)).first() is None


def test_outlook_html_only_reply_through_run_once(
    desk: App, clock: FixedClock, tmp_path: Path
) -> None:
    """An HTML-only reply dropped into the Maildir; `run --once` applies it and sends mail."""
    from tests.desk_helpers import reply_to_of

    case_id = open_report(desk, clock.now())
    sent = next(iter(outbox(desk, recipient=ASHA, template="moderator/new-case")))
    message = EmailMessage(policy=email.policy.SMTP)
    message["Authentication-Results"] = PASS
    message["From"] = f"Asha <{ASHA}>"
    message["To"] = reply_to_of(sent)
    message["Subject"] = f"RE: {sent.subject}"
    message["Message-ID"] = "<outlook-1@ecareermentor.in>"
    message["In-Reply-To"] = sent.message_id
    message.set_content(
        "<html><body><div>/assign me</div><div>/severity medium</div>"
        '<div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Desk<br>'
        "<b>Sent:</b> Monday<br><b>To:</b> Asha<br><b>Subject:</b> case</div>"
        "<div>/close no-violation</div></body></html>",
        subtype="html",
    )
    inbox = tmp_path / "in"
    for sub in ("tmp", "new", "cur"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    (inbox / "new" / "1.outlook").write_bytes(message.as_bytes())
    later(clock)
    run_once(desk, clock)
    case = case_row(desk, case_id)
    assert (case.assignee, case.severity, case.status) == (ASHA, "medium", CaseStatus.OPEN)
    delivered = [p.read_bytes() for p in (tmp_path / "out" / "new").iterdir()]
    transcripts = [raw for raw in delivered if b"Results of your commands" in raw]
    assert len(transcripts) == 1
    assert f"To: {ASHA}".encode() in transcripts[0]


def test_assigning_another_moderator_tells_them(desk: App, clock: FixedClock) -> None:
    case_id = open_report(desk, clock.now())
    feed(desk, moderator_reply(desk, case_id, f"/assign {RAVI}"), clock.now())
    assert case_row(desk, case_id).assignee == RAVI
    [told] = outbox(desk, template="moderator/assigned")
    assert told.recipient == RAVI
    assert f"{ASHA} assigned TS-{case_id} to you." in body_of(told)
    # Ravi can command through the mail he was sent about it.
    from tests.desk_helpers import reply_to_of

    later(clock)
    raw = make_mail(
        RAVI,
        f"Re: {told.subject}",
        "/severity low",
        to=reply_to_of(told),
        in_reply_to=told.message_id,
    )
    feed(desk, f"Authentication-Results: {PASS}\r\n".encode() + raw, clock.now())
    assert case_row(desk, case_id).severity == "low"


def test_a_reporter_cannot_command(desk: App, clock: FixedClock) -> None:
    from tests.desk_helpers import reply_to_of

    case_id = open_report(desk, clock.now())
    ack = outbox(desk, recipient=PRIYA, template="reporter/acknowledgement")[0]
    raw = make_mail(
        PRIYA, f"Re: {ack.subject}", "/close no-violation\n/assign me", to=reply_to_of(ack)
    )
    result = feed(desk, f"Authentication-Results: {PASS}\r\n".encode() + raw, clock.now())
    assert result.disposition is Disposition.FOLLOW_UP
    case = case_row(desk, case_id)
    assert (case.status, case.assignee) == (CaseStatus.OPEN, None)
    assert outbox(desk, template="moderator/transcript") == []
    assert len(outbox(desk, template="moderator/follow-up")) == 2


@pytest.fixture
def authenticating_app(make_settings: SettingsFactory, sqlite_url: str) -> Iterator[App]:
    """A desk that trusts a moderator's From only with our server's Authentication-Results."""
    moderators = {"require_authenticated": True, "trusted_authserv_ids": [TRUSTED]}
    app = build_app(make_settings(sqlite_url, moderators=moderators), migrate=True)
    yield app
    app.engine.dispose()


def test_a_moderators_fresh_email_is_a_proactive_case_and_a_digest_reply_is_not(
    authenticating_app: App, clock: FixedClock
) -> None:
    sqlite_app = authenticating_app
    found = make_mail(
        sender=ASHA,
        subject="Mentor posting WhatsApp numbers in course Q&A",
        body="Found while reviewing DATA-101 Q&A: karan.mentor@example.com posts his number.",
    )
    # Our receiving server vouches for the moderator's From, as it must for commands.
    signed = f"Authentication-Results: {PASS}\r\n".encode() + found
    result = sqlite_app.pipeline.process(signed, SourceRef(label="t"), clock.now())
    with sqlite_app.sessions() as session:
        case = session.get_one(Case, result.case_id)
        assert case.detection is Detection.PROACTIVE
        sent = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    # No acknowledgement to the moderator; the new-case email (theirs to command) goes out.
    assert [r.template for r in sent] == ["moderator/new-case"] * 2

    # The same From with nothing to vouch for it is an ordinary report, acknowledged to the
    # address it names (so a forgery reaches the real moderator's eyes).
    forged = make_mail(sender=ASHA, subject="Ban karan now", message_id="<forged@x.example>")
    result = sqlite_app.pipeline.process(forged, SourceRef(label="t"), clock.now())
    with sqlite_app.sessions() as session:
        case = session.get_one(Case, result.case_id)
        assert case.detection is Detection.COMMUNITY_REPORT
        templates = session.scalars(
            select(OutboxMessage.template).where(OutboxMessage.case_id == case.id)
        ).all()
    assert sorted(templates) == ["moderator/new-case"] * 2 + ["reporter/acknowledgement"]

    with sqlite_app.sessions.begin() as session:
        digest = OutboxMessage(
            created_at=clock.now(),
            case_id=None,
            party=None,
            template="moderator/digest",
            message_id="<digest-1@ecareermentor.in>",
            recipient=ASHA,
            subject="Trust & Safety digest",
            raw=b"",
            next_attempt_at=clock.now(),
        )
        session.add(digest)
    reply = make_mail(
        sender=ASHA,
        subject="Re: Trust & Safety digest",
        body="/close resolved",
        in_reply_to="<digest-1@ecareermentor.in>",
    )
    answered = sqlite_app.pipeline.process(reply, SourceRef(label="t"), clock.now())
    assert answered.disposition is Disposition.REJECTED and answered.case_id is None
    with sqlite_app.sessions() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc())) == case.id
        notice = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "moderator/caseless-reply")
        ).one()
    assert notice.recipient == ASHA and notice.case_id is None
    # The moderator's mailbox answering that notice gets nothing back: no loop.
    echo = make_mail(
        sender=ASHA, subject="Re: Not applied", body="I am away", in_reply_to=notice.message_id
    )
    assert sqlite_app.pipeline.process(echo, SourceRef(label="t"), clock.now()).case_id is None
    with sqlite_app.sessions() as session:
        assert (
            len(
                session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.template == "moderator/caseless-reply"
                    )
                ).all()
            )
            == 1
        )
