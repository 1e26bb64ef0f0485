"""Malformed and hostile mail: a case with what could be read, or quarantine with the reason."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import Attachment, Case, Disposition, InboundMessage, QuarantineEntry
from intake.bounds import BoundedParser, Limits, MessageRefused, mime_depth
from intake.pipeline import Outcome, Result, SourceRef
from scheduler.app import App, build_app
from tests.conftest import CORPUS, SettingsFactory
from tests.mail import make_mail


def nested(depth: int) -> bytes:
    head = b"From: a@example.com\nTo: mentor4u@ecareermentor.in\nSubject: deep\nMIME-Version: 1.0\n"
    parts = [head]
    for level in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n'.encode())
    parts.append(b"Content-Type: text/plain\n\nhello from the bottom\n")
    for level in reversed(range(depth)):
        parts.append(f"--b{level}--\n".encode())
    return b"".join(parts)


@pytest.fixture
def limited(make_settings: SettingsFactory, sqlite_url: str) -> Iterator[App]:
    built = build_app(
        make_settings(
            sqlite_url,
            hygiene={
                "max_header_bytes": 8192,
                "max_mime_depth": 10,
                "max_attachment_bytes": 1000,
            },
        ),
        migrate=True,
    )
    yield built
    built.engine.dispose()


def process(app: App, raw: bytes, clock: FixedClock) -> Result:
    return app.pipeline.process(raw, SourceRef(label="test"), clock.now())


def inbound(app: App, result: Result) -> InboundMessage:
    with app.sessions() as session:
        row = session.get_one(InboundMessage, result.inbound_id)
        row.attachments  # noqa: B018 (load before the session closes)
        return row


def quarantined(app: App) -> QuarantineEntry:
    with app.sessions() as session:
        return session.scalars(select(QuarantineEntry)).one()


def test_huge_headers_are_quarantined_with_the_reason(limited: App, clock: FixedClock) -> None:
    raw = make_mail(headers={f"X-Junk-{n}": "j" * 200 for n in range(100)})
    result = process(limited, raw, clock)
    assert result.outcome is Outcome.QUARANTINED
    entry = quarantined(limited)
    assert "max_header_bytes" in entry.reason and entry.raw == raw


def test_deep_multipart_nesting_is_quarantined(limited: App, clock: FixedClock) -> None:
    assert mime_depth(nested(500)) == 500
    result = process(limited, nested(500), clock)
    assert result.outcome is Outcome.QUARANTINED
    assert "max_mime_depth" in quarantined(limited).reason


def test_modest_nesting_opens_a_case_with_the_text(limited: App, clock: FixedClock) -> None:
    result = process(limited, nested(5), clock)
    assert result.disposition is Disposition.NEW_CASE
    assert "hello from the bottom" in inbound(limited, result).body_text


def test_no_headers_at_all_is_recorded_not_answered(limited: App, clock: FixedClock) -> None:
    result = process(limited, b"just some words, no header block\n", clock)
    assert result.outcome is Outcome.PROCESSED
    assert result.disposition is Disposition.REJECTED


def test_no_body_still_opens_a_case(limited: App, clock: FixedClock) -> None:
    raw = b"From: a@example.com\r\nTo: mentor4u@ecareermentor.in\r\nSubject: empty\r\n"
    result = process(limited, raw, clock)
    assert result.disposition is Disposition.NEW_CASE


def test_eight_bit_headers_and_bad_charsets_are_read(limited: App, clock: FixedClock) -> None:
    raw = (
        "From: Zoë Ünïcode <zoe@example.com>\nTo: mentor4u@ecareermentor.in\n"
        "Subject: Mentor spammed me ☹\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=x-no-such-charset\n"
        "Content-Transfer-Encoding: 8bit\n\nHe keeps messaging me ☹\n"
    ).encode()
    result = process(limited, raw, clock)
    assert result.disposition is Disposition.NEW_CASE
    row = inbound(limited, result)
    assert row.from_address == "zoe@example.com"
    assert "messaging me" in row.body_text


def test_nested_rfc822_and_corpus_samples_with_broken_boundaries(
    limited: App, clock: FixedClock
) -> None:
    for name in ("msg_11.txt", "msg_15.txt", "msg_31.txt", "msg_41.txt"):
        raw = (CORPUS / "cpython-email" / name).read_bytes()
        result = process(limited, raw, clock)
        assert result.outcome is Outcome.PROCESSED, (name, result.reason)
    with limited.sessions() as session:
        rows = session.scalars(select(InboundMessage)).all()
        assert any(row.defects for row in rows)  # the missing boundaries are on record


def test_attachments_are_hashed_and_over_limit_ones_flagged(
    limited: App, clock: FixedClock
) -> None:
    small, big = b"%PDF-1.4 tiny", b"MZ" + b"\x00" * 5000
    raw = make_mail(
        attachments=[
            ("proof.pdf", "application/pdf", small),
            ("run-me.exe", "application/octet-stream", big),
        ]
    )
    result = process(limited, raw, clock)
    with limited.sessions() as session:
        rows = session.scalars(
            select(Attachment).where(Attachment.message_id == result.inbound_id)
        ).all()
        assert {(a.filename, a.size, a.sha256) for a in rows} == {
            ("proof.pdf", len(small), hashlib.sha256(small).hexdigest()),
            ("run-me.exe", len(big), hashlib.sha256(big).hexdigest()),
        }
    assert "AttachmentOverLimit" in inbound(limited, result).defects["defects"]


def test_html_only_mail_is_turned_into_text(limited: App, clock: FixedClock) -> None:
    raw = (
        b"From: a@example.com\nTo: mentor4u@ecareermentor.in\nSubject: html\nMIME-Version: 1.0\n"
        b"Content-Type: text/html\n\n<html><head><style>p{}</style></head><body>"
        b"<p>He asked for <b>money</b></p><script>steal()</script></body></html>\n"
    )
    result = process(limited, raw, clock)
    text = inbound(limited, result).body_text
    assert "He asked for money" in text
    assert "<" not in text and "steal" not in text
    with limited.sessions() as session:
        assert session.scalars(select(Case)).one()


def test_a_parse_over_its_time_limit_is_refused_though_the_message_is_sound() -> None:
    raw = (CORPUS / "mail-parser" / "mail_test_2").read_bytes()
    slow = BoundedParser(Limits(parse_timeout=0.000_1))
    with pytest.raises(MessageRefused, match="parse_timeout"):
        slow.parse(raw)
    slow.close()
    # The refusal was the clock's, not the message's: with time to spare it parses.
    normal = BoundedParser(Limits(parse_timeout=30))
    assert normal.parse(raw).from_address
    normal.close()


def test_a_parse_over_its_memory_limit_is_refused() -> None:
    parser = BoundedParser(Limits(parse_timeout=20, parse_memory_bytes=64 * 1024 * 1024))
    raw = make_mail(body="x" * (80 * 1024 * 1024))
    # Either the parse itself runs out (parse_memory_bytes) or the child cannot even take the
    # message in and dies under its limit: both are refusals for memory, nothing else.
    with pytest.raises(MessageRefused, match=r"parse_memory_bytes|memory limit"):
        parser.parse(raw)
    parser.close()


def test_mime_depth_counts_nesting_not_siblings() -> None:
    sibling = (
        b'--outer\nContent-Type: multipart/alternative; boundary="inner"\n\n'
        b"--inner\nContent-Type: text/plain\n\nx\n--inner--\n"
    )
    raw = b'Content-Type: multipart/mixed; boundary="outer"\n\n' + sibling * 500 + b"--outer--\n"
    assert mime_depth(raw) == 2
    assert mime_depth(nested(30), stop_above=10) == 11
