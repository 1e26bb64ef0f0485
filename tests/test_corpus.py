"""Every real-world sample goes in without crashing the worker, and none is lost."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from datetime import datetime

import pytest
from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.models import Case, Disposition, InboundMessage, QuarantineEntry
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App
from tests.conftest import CORPUS

SAMPLES = sorted(
    path
    for folder in ("cpython-email", "mail-parser")
    for path in (CORPUS / folder).iterdir()
    if path.is_file() and not path.name.startswith(("LICENSE", "NOTICE"))
)


def test_the_corpus_is_there() -> None:
    assert len(SAMPLES) == 49 + 23


@pytest.mark.slow
def test_every_sample_becomes_a_record_and_none_is_lost(app: App, clock: FixedClock) -> None:
    outcomes: Counter[Outcome] = Counter()
    for path in SAMPLES:
        result = app.pipeline.process(path.read_bytes(), SourceRef(label=str(path)), clock.now())
        outcomes[result.outcome] += 1
    with app.sessions() as session:
        inbound = session.scalar(select(func.count()).select_from(InboundMessage))
        quarantined = session.scalar(select(func.count()).select_from(QuarantineEntry))
        cases = session.scalar(select(func.count()).select_from(Case))
        dispositions = Counter(session.scalars(select(InboundMessage.disposition)))
        stored = set(session.scalars(select(InboundMessage.sha256))) | set(
            session.scalars(select(QuarantineEntry.sha256))
        )
    assert inbound + quarantined == len(SAMPLES)
    assert sum(outcomes.values()) == len(SAMPLES)
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in SAMPLES} <= stored
    assert cases == dispositions[Disposition.NEW_CASE] + 0
    # Bounces and reports in the corpus (msg_05, 16, 25, 43, mail_malformed_2) open no case.
    assert dispositions[Disposition.AUTOMATED] >= 5
    assert cases >= 40
    assert outcomes[Outcome.QUARANTINED] == quarantined


def test_a_sample_is_stored_byte_for_byte(app: App, clock: FixedClock) -> None:
    path = CORPUS / "mail-parser" / "mail_test_3"
    raw = path.read_bytes()
    app.pipeline.process(raw, SourceRef(label=str(path)), clock.now())
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert row.raw == raw and row.subject == "Hi there"
        assert row.from_address == "oneil.844@randtelekom.com.tr"


def test_the_body_is_read_from_the_one_parse_as_mail_parser_reads_the_bytes() -> None:
    """mail-parser is handed the message the header parse made, and builds none of its
    summaries (`intake.parse._BodyReader`); it must read what it would have read from the
    bytes. Unnamed attached messages get random names: those are left out."""
    import email
    import email.policy

    import mailparser

    from intake import parse

    every = sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "NOTICE", "README", "SHA256SUMS"))
    )
    assert len(every) > 500
    for path in every:
        data = path.read_bytes()
        headers = email.message_from_bytes(data, policy=email.policy.compat32)
        ours = parse.read_body(headers, max_attachment_bytes=10**9)
        try:
            theirs = mailparser.parse_from_bytes(data)
        except Exception:  # then ours fell back to the standard library too
            assert any(d.startswith("MailParserFailed") for d in ours.defects), path
            continue
        assert ours.text == "\n".join(theirs.text_plain).strip(), path
        assert ours.html == "\n".join(theirs.text_html).strip(), path
        assert set(ours.defects) - {"AttachmentOverLimit"} == set(theirs.defects_categories), path
        unnamed = [replace(a, filename="") for a in ours.attachments]
        read = [replace(parse._attachment(a), filename="") for a in theirs.attachments]
        assert unnamed == read, path
        assert ours.date == (theirs.date if isinstance(theirs.date, datetime) else None), path


def test_header_lookups_give_what_the_header_block_gives_for_every_sample() -> None:
    """`header` and `header_values` skip absent names by the set of names present; for every
    name of every corpus message, in any case, and for names no message has, they must give
    what reading the whole header block gives."""
    from intake.parse import ParsedMessage, _header_text, parse_message

    every = sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "NOTICE", "README", "SHA256SUMS"))
    )
    absent = ["X-Never-Sent", "Auto-Submitted", "Precedence", "Delivered-To", "List-Id"]
    checked = 0
    for path in every:
        parsed: ParsedMessage = parse_message(
            path.read_bytes(), max_bytes=10**9, max_attachment_bytes=10**9
        )
        given = [*parsed.headers.keys(), *absent]
        for name in {spelt for n in given for spelt in (n, n.upper(), n.lower())}:
            first = parsed.headers.get(name)
            assert parsed.header(name) == ("" if first is None else _header_text(first)), name
            every_value = [_header_text(v) for v in parsed.headers.get_all(name, [])]
            assert parsed.header_values(name) == every_value, (path, name)
            checked += 1
    assert checked > 10_000


def test_mail_parser_still_builds_its_summaries_where_the_desk_skips_them() -> None:
    """`_BodyReader` skips mail-parser's summaries by overriding the private method that makes
    them; should a new mail-parser stop calling it, the saving would be gone unseen."""
    import email
    import email.policy

    import mailparser

    from intake import parse

    data = (CORPUS / "mail-parser" / "mail_test_3").read_bytes()
    headers = email.message_from_bytes(data, policy=email.policy.compat32)
    assert mailparser.MailParser(headers).mail  # what the override stands in for
    reader = parse._BodyReader(headers)
    assert reader.mail == {} and reader.mail_partial == {}
    assert reader.text_plain == mailparser.MailParser(headers).text_plain
