"""Every corpus message through classification and the whole pipeline: no crash, no answer."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.models import Case, InboundMessage, OutboxMessage, QuarantineEntry
from casework.notices import is_our_message_id, make_message_id
from intake.bounds import Limits
from intake.classify import ClassifyContext, classify
from intake.parse import ParsedMessage, parse_message
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App
from tests.conftest import CORPUS
from tests.mail import make_mail

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
CONTEXT = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
LIMITS = Limits()


def parsed(raw: bytes, max_bytes: int = LIMITS.max_message_bytes) -> ParsedMessage:
    return parse_message(raw, max_bytes=max_bytes, max_attachment_bytes=LIMITS.max_attachment_bytes)


BOUNCES = CORPUS / "bounces"
NOT_MESSAGES = {"LICENSE", "LICENSE.txt", "NOTICE.txt", "README.md", "SHA256SUMS"}


def corpus_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in NOT_MESSAGES and p.suffix not in {".json", ".tsv"}
    )


def _is_negative(path: Path) -> bool:
    return "not-bounce" in path.parts


AUTOMATED = [p for p in corpus_files(BOUNCES) if not _is_negative(p)]
NEGATIVE = [p for p in corpus_files(BOUNCES) if _is_negative(p)]
CRLF = sorted((BOUNCES / "sisimai-crlf").glob("*.eml"))


def _classify(path: Path) -> tuple[str, str]:
    found = classify(parsed(path.read_bytes()), CONTEXT)
    return found.verdict.value, found.rule


def test_the_corpus_is_there() -> None:
    assert len(AUTOMATED) > 390
    assert len(NEGATIVE) == 1
    assert len(CRLF) == 68


@pytest.mark.parametrize("path", AUTOMATED, ids=lambda p: str(p.relative_to(BOUNCES)))
def test_every_bounce_auto_reply_and_complaint_is_automated(path: Path) -> None:
    verdict, rule = _classify(path)
    assert verdict != "human", f"{path.name} looked human"
    assert rule


@pytest.mark.parametrize("path", NEGATIVE, ids=lambda p: p.name)
def test_the_ordinary_mail_among_the_bounces_is_human(path: Path) -> None:
    assert _classify(path) == ("human", "no-automation-signs")


@pytest.mark.parametrize("path", CRLF, ids=lambda p: p.name)
def test_crlf_twins_classify_like_their_lf_originals(path: Path) -> None:
    """The twin, its own LF rendering and the same-named LF file all get the same verdict."""
    twin = _classify(path)
    lf = classify(
        parsed(path.read_bytes().replace(b"\r\n", b"\n")),
        CONTEXT,
    )
    assert (lf.verdict.value, lf.rule) == twin
    original = BOUNCES / "sisimai" / path.name
    if original.exists():
        assert _classify(original)[0] == twin[0]


def test_the_kinds_of_automated_mail_are_told_apart() -> None:
    verdicts = Counter(_classify(p)[0] for p in AUTOMATED)
    assert verdicts["bounce"] > 250
    assert verdicts["auto-reply"] >= 5  # rfc3834 vacation replies
    assert verdicts["feedback-report"] >= 10  # ARF complaints


def test_bounces_through_the_pipeline_never_open_a_case_or_answer(sqlite_app: App) -> None:
    for path in AUTOMATED:
        result = sqlite_app.pipeline.process(path.read_bytes(), SourceRef(label=path.name), NOW)
        assert result.outcome is not Outcome.QUARANTINED, (path.name, result.reason)
    with sqlite_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        rows = session.scalars(select(InboundMessage)).all()
        assert rows
        assert all(r.reason for r in rows)
        assert {r.disposition.value for r in rows} <= {"automated", "loop", "duplicate"}


def test_every_corpus_file_goes_through_the_pipeline_without_a_crash(sqlite_app: App) -> None:
    """Odd MIME becomes a row with what could be read (defects kept) or a quarantine entry."""
    files = corpus_files(CORPUS)
    assert len(files) > 500
    outcomes: Counter[Outcome] = Counter()
    for path in files:
        result = sqlite_app.pipeline.process(path.read_bytes(), SourceRef(label=path.name), NOW)
        outcomes[result.outcome] += 1
        assert result.reason or result.outcome is Outcome.PROCESSED
    with sqlite_app.sessions() as session:
        quarantined = session.scalars(select(QuarantineEntry)).all()
        assert all(q.reason and q.raw for q in quarantined)
        with_defects = session.scalars(
            select(InboundMessage).where(InboundMessage.defects != {})
        ).all()
    assert outcomes[Outcome.PROCESSED] > 450
    assert outcomes[Outcome.QUARANTINED] == 0, [q.reason for q in quarantined]
    assert with_defects  # the broken-boundary samples are recorded with their defects


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Absent mentor never showed up", "He missed three sessions."),
        ("Vacation refund scam", "He asked me to pay for a vacation package."),
        ("Message not delivered to my mentor", "It says my message could not be delivered."),
        ("Fwd: Undelivered Mail Returned to Sender", "This is the mail system at host mx.\n"),
        ("Re: [TS-4] We received your report", "Thanks, here are the screenshots."),
        ("Out of pocket costs for the course", "The mentor charged me extra."),
    ],
)
def test_reports_that_mention_delivery_or_absence_stay_human(subject: str, body: str) -> None:
    from tests.mail import make_mail

    message = parsed(make_mail(subject=subject, body=body), 1_000_000)
    assert classify(message, CONTEXT).verdict.value == "human"


RULE_SAMPLES = [
    ({"X-SafetyDesk-Loop": "mentor4u@ecareermentor.in"}, {}, "our-loop-header"),
    ({}, {"sender": "mentor4u+12rabcdefghijklmnop@ecareermentor.in"}, "from-our-address"),
    ({}, {"message_id": "<0123456789abcdef0123456789abcdef@ecareermentor.in>"}, "our-message-id"),
    ({}, {"subject": "complaint about message from 192.0.2.1"}, "complaint-subject"),
    ({"Return-Path": "<>"}, {}, "null-return-path"),
    ({}, {"sender": "MAILER-DAEMON@mx.example.net"}, "mailer-daemon-sender"),
    ({}, {"sender": "postmaster@mx.example.net"}, "mailer-daemon-sender"),
    ({}, {"subject": "Undelivered Mail Returned to Sender"}, "bounce-subject"),
    ({}, {"subject": "failure notice"}, "bounce-subject"),
    (
        {"X-Autoreply": "yes"},
        {"in_reply_to": "<0123456789abcdef0123456789abcdef@ecareermentor.in>"},
        "automated-reply-to-our-mail",
    ),
    ({"Auto-Submitted": "auto-replied"}, {}, "auto-submitted"),
    ({"Precedence": "bulk"}, {}, "precedence"),
    ({"X-Autorespond": "1"}, {}, "x-autorespond"),
    ({"X-Auto-Response-Suppress": "All"}, {}, "x-auto-response-suppress"),
    ({"List-Unsubscribe": "<mailto:u@lists.example>"}, {}, "mailing-list"),
    ({}, {"sender": "no-reply@platform.example"}, "no-reply-sender"),
    ({}, {"subject": "Out of Office: back on Monday"}, "out-of-office-subject"),
    ({}, {"subject": "Automatic reply: your message"}, "out-of-office-subject"),
    ({}, {"subject": "Re: Abwesenheitsnotiz"}, "out-of-office-subject"),
    (
        {},
        {"subject": "Notice", "body": "This is the mail system at host mx.example.net.\n"},
        "bounce-body",
    ),
]


@pytest.mark.parametrize(
    ("headers", "fields", "rule"), RULE_SAMPLES, ids=[r for *_, r in RULE_SAMPLES]
)
def test_each_named_rule_records_its_name(
    headers: dict[str, str], fields: dict[str, str], rule: str
) -> None:
    from tests.mail import make_mail

    raw = make_mail(headers=headers, **fields)  # type: ignore[arg-type]
    verdict = classify(parsed(raw, 1_000_000), CONTEXT)
    assert verdict.rule == rule
    assert verdict.automated


def test_auto_submitted_no_is_a_person() -> None:
    from tests.mail import make_mail

    raw = make_mail(headers={"Auto-Submitted": "no"})
    assert not classify(parsed(raw, 1_000_000), CONTEXT).automated


def test_only_message_ids_our_outbox_writes_for_our_domain_are_ours() -> None:
    ours = make_message_id("ecareermentor.in")
    assert is_our_message_id(ours, "ecareermentor.in")
    assert is_our_message_id(f"  {ours.upper()} ", "ECareerMentor.in")
    assert not is_our_message_id(ours, "example.com")
    assert not is_our_message_id(ours.replace("@", "@mail."), "ecareermentor.in")
    assert not is_our_message_id("<0123@ecareermentor.in>", "ecareermentor.in")
    assert not is_our_message_id(None, "ecareermentor.in")
    # A stranger's 32-hex id at their own domain is theirs: a person, not a loop.
    raw = make_mail(message_id=make_message_id("gmail.com"))
    assert not classify(parsed(raw, 1_000_000), CONTEXT).automated
