"""Nothing a sender or moderator writes adds a header or recipient to our mail, or is echoed."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import OutboxMessage, Party
from casework.notices import Notice, make_message_id
from casework.settings import DeskSettings
from intake.pipeline import SourceRef
from outbound.headers import UnsafeHeader, header_text
from outbound.outbox import Outbox
from outbound.render import Renderer
from scheduler.app import App

SENDER = "priya.student@example.com"
ALLOWED = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "x-auto-response-suppress",
    "x-safetydesk-loop",
    "x-safetydesk-case",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
HOSTILE_SUBJECT = "=?utf-8?q?Hello=0D=0ABcc:_boss@victim.example=0D=0AX-Evil:_1?="
HOSTILE_NAME = '=?utf-8?q?Evil=0D=0ABcc:_x@victim.example?= "Cc: y@victim.example"'
HOSTILE_BODY = (
    "Buy cheap watches at http://spam.example/\r\nBcc: z@victim.example\r\n\r\n"
    "<script>alert(1)</script>\n" + "A" * 5000
)


def read(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def assert_only_our_headers(raw: bytes, recipient: str) -> None:
    parsed = read(raw)
    names = [name.lower() for name in parsed.keys()]  # noqa: SIM118
    assert set(names) <= ALLOWED, names
    assert len(names) == len(set(names))
    assert [a.addr_spec for a in parsed["To"].addresses] == [recipient]


def hostile_mail() -> bytes:
    head = (
        f"From: {HOSTILE_NAME} <{SENDER}>\r\n"
        "To: mentor4u@ecareermentor.in\r\n"
        f"Subject: {HOSTILE_SUBJECT}\r\n"
        "Message-ID: <hostile-1@client.example>\r\n"
        "Date: Mon, 04 Jan 2027 08:55:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    )
    return head.encode() + HOSTILE_BODY.encode()


def test_hostile_subject_name_and_body_add_no_header_or_recipient(
    app: App, clock: FixedClock
) -> None:
    result = app.pipeline.process(hostile_mail(), SourceRef(label="hostile"), clock.now())
    assert result.case_id is not None
    with app.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert len(rows) == 3  # the acknowledgement and the two moderators' emails
    for row in rows:
        assert_only_our_headers(row.raw, row.recipient)
        assert b"victim.example" not in row.raw.split(b"\r\n\r\n", 1)[0]


def test_the_acknowledgement_never_echoes_the_senders_words(app: App, clock: FixedClock) -> None:
    app.pipeline.process(hostile_mail(), SourceRef(label="hostile"), clock.now())
    with app.sessions() as session:
        ack = session.scalars(
            select(OutboxMessage).where(OutboxMessage.party == Party.REPORTER)
        ).one()
    parsed = read(ack.raw)
    everything = ack.raw.decode("ascii", "replace") + "".join(
        part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"
    )
    for words in ("Hello\r\nBcc", "Evil", "watches", "spam.example", "script", "boss@"):
        assert words not in everything
    assert "Hello," in everything  # the greeting is there, without the sender's name


def test_moderator_html_shows_the_senders_markup_escaped(app: App, clock: FixedClock) -> None:
    app.pipeline.process(hostile_mail(), SourceRef(label="hostile"), clock.now())
    with app.sessions() as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.party == Party.MODERATOR)
        ).first()
    assert row is not None
    html = next(
        part.get_content()
        for part in read(row.raw).walk()
        if part.get_content_type() == "text/html"
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


# --- property tests of composing our mail ------------------------------------------------------


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Outbox:
    folder: Path = tmp_path_factory.mktemp("templates")
    (folder / "t.subject.j2").write_text("{{ subject }}")
    (folder / "t.txt.j2").write_text("{{ text }}\n")
    (folder / "t.html.j2").write_text("<p>{{ text }}</p>\n")
    desk = DeskSettings(token_secret=b"0123456789abcdef0123456789abcdef")
    return Outbox(desk, Renderer(folder))


NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
FIXTURE = HealthCheck.function_scoped_fixture
INJECT = "\r\nBcc: x@victim.example"
header_like = st.one_of(
    st.text(),
    st.builds(
        lambda a, b: f"=?utf-8?q?{a}=0D=0A{b}?=",
        st.text(alphabet="abcXYZ:_@.-", max_size=20),
        st.text(alphabet="abcXYZ:_@.-", max_size=20),
    ),
    st.builds(lambda a: f"x\r\nBcc: {a}@victim.example", st.text(alphabet="abc", min_size=1)),
    st.builds(lambda n: "W" * n, st.integers(min_value=900, max_value=5000)),
    st.lists(st.sampled_from(["\r", "\n", "\x00", "\x85", "\u2028", "=?", "?=", ":", " "])).map(
        "".join
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=header_like, text=header_like, thread=header_like)
def test_no_text_can_add_a_header_or_recipient(
    outbox: Outbox, subject: str, text: str, thread: str
) -> None:
    notice = Notice(
        template="t",
        recipient=SENDER,
        party=Party.REPORTER,
        case_id=7,
        context={"subject": subject, "text": text},
        in_reply_to=thread,
        references=(thread, "<ok@client.example>"),
    )
    raw = outbox.compose(notice, make_message_id("ecareermentor.in"), NOW)
    assert_only_our_headers(raw, SENDER)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    recipient=st.one_of(header_like, st.emails(), st.emails().map(lambda e: e + "\r\nBcc: x@y.z"))
)
def test_a_recipient_is_one_address_or_refused(outbox: Outbox, recipient: str) -> None:
    try:
        raw = compose_to(outbox, recipient)
    except UnsafeHeader:
        return  # refused before anything was written: safe
    assert_only_our_headers(raw, recipient)


def compose_to(outbox: Outbox, recipient: str) -> bytes:
    """A plain notice to `recipient`, composed exactly as the outbox would store it."""
    notice = Notice(
        template="t",
        recipient=recipient,
        party=Party.SUBJECT,
        case_id=7,
        context={"subject": "s", "text": "t"},
    )
    return outbox.compose(notice, make_message_id("ecareermentor.in"), NOW)


def test_real_message_ids_keep_the_thread(outbox: Outbox) -> None:
    # Gmail's ids carry "=" and "+"; a reply must still name the message it answers.
    gmail = "<CAByYQsF5qdTf_h-1AAVPW0RgR1YN+LE=+0Uv9LpQ4aA_myPtCw@mail.gmail.com>"
    notice = Notice(
        template="t",
        recipient=SENDER,
        party=Party.REPORTER,
        case_id=7,
        context={"subject": "s", "text": "t"},
        in_reply_to=gmail,
        references=("<first@client.example>", gmail, "<=?utf-8?q?x?=@smuggled.example>"),
    )
    sent = read(outbox.compose(notice, make_message_id("ecareermentor.in"), NOW))
    assert sent["In-Reply-To"] == gmail
    assert sent["References"].split() == ["<first@client.example>", gmail]


@given(st.text())
def test_header_text_is_one_line_with_no_encoded_words(value: str) -> None:
    text = header_text(value)
    assert "\r" not in text and "\n" not in text and "=?" not in text
    assert len(text) <= 400


@pytest.mark.parametrize(
    "recipient",
    [
        "karan.mentor@example.com" + INJECT,
        "karan.mentor@example.com, x@victim.example",
        '"x@victim.example" <karan.mentor@example.com>',
        "=?utf-8?q?x=0D=0ABcc:_x@victim.example?=@example.com",
        "karan.mentor@example.com\n",
    ],
)
def test_hostile_recipients_are_refused(outbox: Outbox, recipient: str) -> None:
    with pytest.raises(UnsafeHeader):
        compose_to(outbox, recipient)


def test_a_plain_recipient_is_accepted(outbox: Outbox) -> None:
    raw = compose_to(outbox, "o'brien+tag@mail.example.ie")
    assert_only_our_headers(raw, "o'brien+tag@mail.example.ie")
