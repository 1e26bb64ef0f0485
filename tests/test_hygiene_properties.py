"""Property tests: arbitrary bytes and text never raise out of the parser front end or pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from casework.models import InboundMessage, QuarantineEntry
from intake.bounces import read_bounce
from intake.bounds import BoundedParser, Limits, MessageRefused
from intake.classify import ClassifyContext, classify
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
CONTEXT = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
INLINE = BoundedParser(Limits(parse_timeout=0, max_header_bytes=64 * 1024, max_mime_depth=8))
FIXTURE = HealthCheck.function_scoped_fixture

header_names = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Subject",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
        "Return-Path",
        "Auto-Submitted",
        "Precedence",
        "List-Id",
        "X-SafetyDesk-Loop",
        "Date",
    ]
)
header_values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            'multipart/mixed; boundary="b"',
            "multipart/alternative; boundary=b2",
            "multipart/report; report-type=delivery-status; boundary=r",
            "message/rfc822",
            "message/delivery-status",
            "text/plain; charset=x-unknown-charset",
            "text/html; charset=utf-8",
            "base64",
            "quoted-printable",
            "=?utf-8?q?=0D=0ABcc:_x@y.example?=",
            "=?x-bogus?b?!!!?=",
            "<>",
            "MAILER-DAEMON <>",
            "auto-replied",
            "mentor4u@ecareermentor.in",
        ]
    ),
)
lines = st.one_of(
    st.text(max_size=120),
    st.sampled_from(["--b", "--b--", "--b2", "--r", "", "Status: 5.1.1", "Action: failed"]),
    st.tuples(header_names, header_values).map(lambda h: f"{h[0]}: {h[1]}"),
)
line_endings = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def messy_messages(draw: st.DrawFn) -> bytes:
    """Header-ish and MIME-ish lines in any order, any line ending, any encoding damage."""
    ending = draw(line_endings)
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=12))
    body = draw(st.lists(lines, max_size=30))
    text = ending.join(f"{n}: {v}" for n, v in headers) + ending + ending + ending.join(body)
    data = text.encode("utf-8", "surrogatepass")
    tail = draw(st.binary(max_size=64))
    return data + tail


def front_end(raw: bytes) -> None:
    """Everything before the database: pre-scan, parse, classify, bounce reading."""
    try:
        parsed = INLINE.parse(raw)
    except MessageRefused:
        return
    verdict = classify(parsed, CONTEXT)
    assert verdict.rule
    read_bounce(parsed, "ecareermentor.in")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise_from_the_front_end(raw: bytes) -> None:
    front_end(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_arbitrary_text_never_raises_from_the_front_end(text: str) -> None:
    front_end(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=400, deadline=None)
@given(messy_messages())
def test_messy_mime_never_raises_from_the_front_end(raw: bytes) -> None:
    front_end(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[FIXTURE])
@given(
    raw=st.one_of(
        messy_messages(),
        st.binary(max_size=2000),
        st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )
)
def test_nothing_raises_out_of_the_pipeline(sqlite_app: App, raw: bytes) -> None:
    """Every arrival ends as one inbound row or quarantine entry; nothing escapes."""
    with sqlite_app.sessions() as session:
        before = _rows(session)
    result = sqlite_app.pipeline.process(raw, SourceRef(label="hypothesis"), NOW)
    assert result.outcome in set(Outcome)
    with sqlite_app.sessions() as session:
        after = _rows(session)
    # A duplicate is recorded too (disposition "duplicate"), only never processed again.
    assert after == before + 1


def _rows(session: object) -> int:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    inbound = session.scalar(
        select(func.count()).select_from(InboundMessage).where(InboundMessage.uid.is_(None))
    )
    quarantined = session.scalar(select(func.count()).select_from(QuarantineEntry))
    return int(inbound or 0) + int(quarantined or 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[FIXTURE])
@given(body=st.text(max_size=2000), subject=st.text(max_size=200))
def test_any_text_a_moderator_replies_with_is_handled(
    sqlite_app: App, body: str, subject: str
) -> None:
    """Whatever a moderator writes back through their reply token is processed, not quarantined.

    Today that is a follow-up on the case; with the command language merged the same property
    covers the command parser, end to end.
    """
    from email.message import EmailMessage

    from casework.models import Party
    from casework.tokens import ReplyToken, reply_address
    from tests.conftest import MODERATORS
    from tests.mail import make_mail

    desk = sqlite_app.settings.desk
    opened = sqlite_app.pipeline.process(make_mail(), SourceRef(label="case"), NOW)
    assert opened.case_id is not None
    moderator = MODERATORS[0]
    token = ReplyToken(opened.case_id, Party.MODERATOR, moderator)
    message = EmailMessage()
    message["From"] = moderator
    message["To"] = reply_address(desk.address, desk.token_secret, token)
    message["Subject"] = " ".join(subject.split())
    message.set_content(body)
    result = sqlite_app.pipeline.process(message.as_bytes(), SourceRef(label="moderator"), NOW)
    assert result.outcome is Outcome.PROCESSED, result.reason
    assert result.case_id == opened.case_id
