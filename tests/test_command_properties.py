"""Properties of the command language: any text is read and judged, never raised on."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from casework.commands import (
    SPECS,
    Draft,
    Lookups,
    Planned,
    Problem,
    Verb,
    read_block,
    validate_block,
)
from casework.db import transaction
from casework.models import (
    Action,
    AuditEvent,
    Case,
    CaseStatus,
    Disposition,
    Person,
    QuarantineEntry,
)
from casework.programs import import_roster, read_roster
from casework.rules import RULES
from intake.authresults import judge_sender
from intake.pipeline import Outcome, SourceRef
from intake.reply_text import split_html_reply, split_reply
from scheduler.app import App, build_app
from tests.conftest import MODERATORS
from tests.desk_helpers import KARAN, PRIYA, body_of, outbox, reply_to_of
from tests.mail import make_mail

ASHA, RAVI = MODERATORS


def examples(count: int) -> int:
    """Modest counts for CI; SAFETYDESK_PROPERTY_SCALE=20 for a long hunt."""
    return count * int(os.environ.get("SAFETYDESK_PROPERTY_SCALE", "1"))


# Arguments a moderator might plausibly type, valid and not, mixed with arbitrary words.
WORDS = st.one_of(
    st.sampled_from(
        [
            "me",
            KARAN,
            PRIYA,
            ASHA,
            RAVI,
            "mentor4u@ecareermentor.in",
            "PY101",
            "NOPE",
            "TS-1",
            "TS-2",
            "TS-999999999999",
            "A-1",
            "a-2",
            "A-0",
            "no-violation",
            "duplicate",
            "resolved",
            "high",
            "critical",
            "-",
            "--",
            "",
            *(rule.code for rule in RULES),
        ]
    ),
    st.text(min_size=1, max_size=20),
)
VERBS = st.one_of(
    st.sampled_from([verb.value for verb in Verb]),
    st.sampled_from([verb.value.upper() for verb in Verb]),
    st.from_regex(r"[A-Za-z][A-Za-z-]{0,12}", fullmatch=True),
)


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    verb = draw(VERBS)
    words = draw(st.lists(WORDS, max_size=4))
    lead = draw(st.sampled_from(["", " ", "  ", "> "]))
    return f"{lead}/{verb} {' '.join(words)}".rstrip()


# A reply body: command lines, free text, blank lines, quote markers and signatures, any order.
BODIES = st.lists(
    st.one_of(
        command_lines(),
        st.text(max_size=60),
        st.sampled_from(["", "-- ", "> quoted", "On Mon, 4 Jan 2027, Desk wrote:", "-------"]),
    ),
    max_size=8,
).map("\n".join)


# A block that names the person, rule and program first, so that sanctions and appeals decisions
# with arbitrary facts reach the enforcement service and its notices.
PRELUDE = f"/subject {KARAN}\n/category off-platform\n/program PY101\n"
DECISIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["warn", "strike", "ban", "escalate", "approve", "reject", "uphold", "overturn", "note"]
        ),
        st.text(min_size=1, max_size=80),
    ),
    min_size=1,
    max_size=2,
).map(lambda pairs: PRELUDE + "\n".join(f"/{verb} {text}" for verb, text in pairs))


def lookups() -> Lookups:
    return Lookups(
        moderator=ASHA,
        is_moderator=lambda address: address in MODERATORS,
        program_exists=lambda code: code == "PY101",
        merge_target_error=lambda target: None if target == 2 else f"no case TS-{target}",
        forbidden_subjects=frozenset({PRIYA, "mentor4u@ecareermentor.in"}),
    )


DRAFTS = st.builds(
    Draft,
    status=st.sampled_from(list(CaseStatus)),
    has_reporter=st.booleans(),
    has_subject=st.booleans(),
    category=st.one_of(st.none(), st.sampled_from([rule.code for rule in RULES])),
    ref=st.just("TS-1"),
)


@settings(max_examples=examples(300), deadline=None)
@given(text=st.one_of(st.text(), BODIES), draft=DRAFTS)
def test_reading_and_validating_any_text_never_raises(text: str, draft: Draft) -> None:
    typed = split_reply(text).reply
    block = read_block(typed)
    status = draft.status  # validation moves the draft along, line by line
    results, valid = validate_block(block, draft, lookups())
    # Every command gets exactly one verdict, in order, and the block is valid only if all are.
    assert [item.command for item in results] == list(block.commands)
    assert valid == all(isinstance(item, Planned) for item in results)
    for item in results:
        if isinstance(item, Problem):
            assert item.error.strip()
    if results and isinstance(results[0], Planned):
        assert status in SPECS[results[0].verb].states
    # Nothing a moderator typed disappears: each line is a command, its TEXT, or unprocessed.
    for line in typed.splitlines():
        if line.strip():
            assert (
                any(line.strip() in c.line or line.rstrip() in c.more for c in block.commands)
                or line.rstrip() in block.unprocessed
            ), line


@settings(max_examples=examples(100), deadline=None)
@given(markup=st.text(max_size=300))
def test_html_replies_never_raise(markup: str) -> None:
    split_html_reply(f"<html><body>{markup}<blockquote>{markup}</blockquote></body></html>")


AUTH_CLAUSES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "dmarc=pass header.from=ecareermentor.in",
                "dkim=pass header.d=ecareermentor.in",
                "dkim=pass header.i=@ecareermentor.in",
                "spf=pass smtp.mailfrom=ecareermentor.in",
                "dmarc=pass",
                "none",
                "(comment; dmarc=pass)",
            ]
        ),
        st.text(max_size=40),
    ),
    max_size=4,
).map("; ".join)


@settings(max_examples=examples(200), deadline=None)
@given(
    ours=st.lists(st.text(max_size=80), max_size=3),
    theirs=st.lists(
        st.tuples(
            st.sampled_from(["mx.attacker.example", "ecareermentor.in", "mx.google.com"]),
            AUTH_CLAUSES,
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_only_our_server_can_vouch_for_a_moderator(
    ours: list[str], theirs: list[tuple[str, str]]
) -> None:
    """Any header text is read without raising; results from other servers never authenticate."""
    judge_sender(
        [("Authentication-Results", value) for value in ours], ["mx.ecareermentor.in"], ASHA
    )
    forged = [("Authentication-Results", f"{server}; {clauses}") for server, clauses in theirs]
    assert not judge_sender(forged, ["mx.ecareermentor.in"], ASHA).authenticated


# --- through the pipeline ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One desk for every example: its case collects whatever state the examples leave."""
    from scheduler.config import parse_settings

    folder: Path = tmp_path_factory.mktemp("properties")
    (folder / "secret").write_text("a-long-enough-property-test-secret-0123456789")
    document = {
        "desk": {"address": "mentor4u@ecareermentor.in", "token_secret_file": "secret"},
        "database": {"url": f"sqlite:///{folder / 'desk.sqlite3'}"},
        "intake": {"source": "maildir", "maildir": "in"},
        "outbound": {"transport": "maildir", "maildir": "out"},
        "moderators": {"addresses": MODERATORS, "require_authenticated": False},
    }
    app = build_app(parse_settings(document, base=folder, environ={}), migrate=True)
    prepare(app)
    yield app
    app.engine.dispose()


def prepare(app: App) -> None:
    """A roster and two reports (TS-1, TS-2), once per database."""
    start = datetime(2027, 1, 4, 9, tzinfo=UTC)
    with transaction(app.sessions) as session:
        if session.get(Case, 1) is not None:
            return
        import_roster(
            session,
            read_roster(
                "program,title,email,name,role\n"
                f"PY101,Python,{KARAN},Karan,mentor\n"
                "PY101,Python,meera.mentor@example.com,Meera,mentor\n"
            ),
            start,
        )
    for minutes in (0, 1):
        result = app.pipeline.process(
            make_mail(PRIYA, "Mentor asked me to pay", f"{KARAN} asked me to pay on WhatsApp."),
            SourceRef(label="property"),
            start + timedelta(minutes=minutes),
        )
        assert result.case_id is not None


_minutes = itertools.count(10)


def _quarantined(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(QuarantineEntry)) or 0


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.one_of(BODIES, DECISIONS), moderator=st.sampled_from(MODERATORS))
def test_any_moderator_reply_is_handled_without_quarantine(
    module_app: App, body: str, moderator: str
) -> None:
    check_moderator_reply(module_app, body, moderator)


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.one_of(BODIES, DECISIONS), moderator=st.sampled_from(MODERATORS))
def test_moderator_replies_on_sqlite_and_postgresql(app: App, body: str, moderator: str) -> None:
    """The same property on each database (the app lives for all examples of one run)."""
    prepare(app)
    check_moderator_reply(app, body, moderator)


def check_moderator_reply(app: App, body: str, moderator: str) -> None:
    new_case = next(
        row
        for row in outbox(app, recipient=moderator, template="moderator/new-case")
        if row.case_id == 1
    )
    quoted = "\n".join(f"> {line}" for line in body_of(new_case).splitlines())
    raw = make_mail(
        moderator,
        f"Re: {new_case.subject}",
        f"{body}\n\nOn Mon, 4 Jan 2027 at 09:00, Trust & Safety wrote:\n{quoted}\n",
        to=reply_to_of(new_case),
        in_reply_to=new_case.message_id,
    )
    now = datetime(2027, 1, 4, 9, tzinfo=UTC) + timedelta(minutes=next(_minutes))
    result = app.pipeline.process(raw, SourceRef(label="property"), now)
    assert result.outcome is Outcome.PROCESSED, result.reason
    assert result.disposition is Disposition.COMMAND
    assert _quarantined(app) == 0


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, sender=st.sampled_from([KARAN, PRIYA, "stranger@example.net"]))
def test_any_party_reply_is_handled_without_quarantine(
    module_app: App, body: str, sender: str
) -> None:
    """Replies of the reporter, the reported person (perhaps an appeal) and strangers."""
    app = module_app
    template = "reporter/acknowledgement" if sender == PRIYA else None
    rows = [
        row
        for row in outbox(app, recipient=sender, template=template)
        if row.case_id == 1 and b"\nReply-To:" in row.raw
    ]
    to = reply_to_of(rows[-1]) if rows else "mentor4u@ecareermentor.in"
    raw = make_mail(sender, "Re: [TS-1] your case", body or "(empty)", to=to)
    now = datetime(2027, 1, 4, 9, tzinfo=UTC) + timedelta(minutes=next(_minutes))
    result = app.pipeline.process(raw, SourceRef(label="property"), now)
    assert result.outcome is Outcome.PROCESSED, result.reason
    assert _quarantined(app) == 0


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    verb=st.sampled_from(["warn", "strike", "escalate"]),
    facts=st.text(min_size=1, max_size=120).filter(lambda text: bool(text.strip())),
)
def test_a_sanction_with_any_facts_takes_effect(module_app: App, verb: str, facts: str) -> None:
    """Whatever the moderator writes as facts, the notice states them and goes out."""
    app = module_app
    minute = next(_minutes)
    now = datetime(2027, 1, 4, 9, tzinfo=UTC) + timedelta(minutes=minute)
    person = f"mentor{minute}@example.com"
    opened = app.pipeline.process(
        make_mail(f"student{minute}@example.com", "Mentor asked me to pay", f"{person} did it."),
        SourceRef(label="property"),
        now,
    )
    assert opened.case_id is not None
    new_case = next(
        row
        for row in outbox(app, recipient=ASHA, template="moderator/new-case")
        if row.case_id == opened.case_id
    )
    first, *rest = facts.splitlines() or [""]
    body = "\n".join(
        [
            f"/subject {person}",
            "/category spam",
            "/program PY101",
            "/severity high",
            f"/{verb} {first}",
            *rest,
        ]
    )
    raw = make_mail(
        ASHA,
        f"Re: {new_case.subject}",
        body,
        to=reply_to_of(new_case),
        in_reply_to=new_case.message_id,
    )
    result = app.pipeline.process(raw, SourceRef(label="property"), now)
    assert result.outcome is Outcome.PROCESSED, result.reason
    assert _quarantined(app) == 0
    typed = read_block(split_reply(body.replace("\x00", "")).reply)  # as parsed
    if typed.commands[-1:] and typed.commands[-1].verb == verb and typed.commands[-1].text:
        with app.sessions() as session:
            kinds = session.scalars(
                select(Action.kind).join(Person).where(Person.email == person)
            ).all()
        assert len(kinds) == 1, result.reason


def test_nul_characters_in_a_reply_are_handled_on_every_database(app: App) -> None:
    """Found by the property above on PostgreSQL, whose text columns cannot hold U+0000."""
    prepare(app)
    check_moderator_reply(app, "/note before\x00after", ASHA)
    raw = make_mail(
        PRIYA,
        "=?utf-8?q?A_report_with_a_=00_in_it?=",
        "He asked me to pay\x00 on WhatsApp.",
        name="Priya\x00 Sharma",
    )
    result = app.pipeline.process(raw, SourceRef(label="nul"), datetime(2027, 1, 5, tzinfo=UTC))
    assert result.outcome is Outcome.PROCESSED, result.reason
    assert _quarantined(app) == 0
    with app.sessions() as session:
        notes = session.scalars(select(AuditEvent).where(AuditEvent.kind == "case.note")).all()
    assert [event.detail["text"] for event in notes] == ["beforeafter"]
