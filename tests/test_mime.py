"""Our MIME writer: whatever we put in, a standard reader gets back exactly, in short CRLF lines."""

from __future__ import annotations

import email.header
import email.policy
import email.utils
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbound import mime
from outbound.headers import UnsafeHeader, header_text, verify_composed

texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abc =?_\"\\()<>,;:@.'é", max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0x900, max_codepoint=0x97F), max_size=200),
    st.builds(lambda n: "W" * n, st.integers(min_value=60, max_value=950)),
)
ADDRESS = "o'brien+tag@mail.example.ie"


def read(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def read_mailbox(raw: bytes, name: bytes) -> tuple[str, str]:
    """A mailbox header as RFC 2047 reads it: white space between encoded words is dropped.

    (The email package's modern parser keeps a space there, which the RFC forbids.)
    """
    unfolded = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").decode("ascii")
    value = next(line for line in unfolded.split("\r\n") if line.startswith(f"{name.decode()}:"))
    ((display, address),) = email.utils.getaddresses([value.partition(":")[2]])
    return str(email.header.make_header(email.header.decode_header(display))), address


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def assert_well_formed(raw: bytes) -> None:
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def body_text(value: str) -> str:
    """What a reader gets back from a text part: line ends as LF, ending in one."""
    lines = value.encode("utf-8").splitlines()
    return (b"\n".join(lines) + b"\n").decode("utf-8")


@settings(max_examples=400, deadline=None)
@given(subject=texts, name=texts, text=texts, html=st.none() | texts)
def test_every_value_reads_back_exactly(
    subject: str, name: str, text: str, html: str | None
) -> None:
    subject, name = header_text(subject, limit=900), header_text(name)
    raw = mime.compose(
        [
            mime.mailbox("From", name, ADDRESS),
            mime.structured("To", ADDRESS),
            mime.unstructured("Subject", subject),
            mime.structured("References", *[f"<{i}.{'x' * 40}@client.example>" for i in range(9)]),
        ],
        mime.Body(text, html),
    )
    assert_well_formed(raw)
    message = read(raw)
    assert str(message["Subject"]) == subject
    assert read_mailbox(raw, b"From") == (name, ADDRESS)
    assert [a.addr_spec for a in message["To"].addresses] == [ADDRESS]
    assert len(str(message["References"]).split()) == 9
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == body_text(text)
    if html is None:
        assert not message.is_multipart()
    else:
        part = message.get_body(preferencelist=("html",))
        assert part is not None
        assert part.get_content().replace("\r\n", "\n") == body_text(html)
    if all(len(word) < 60 for word in f"{subject} {name}".split()):
        assert all(len(line) <= 78 for line in header_lines(raw))


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Hello,\nyour report is TS-12.\n", "7bit"),
        ("A line longer than seventy-eight characters " * 3 + "\n", "quoted-printable"),
        ("Priya Sharma wrote: \u201cit is fine\u201d\n", "quoted-printable"),
        ("नमस्ते, आपकी रिपोर्ट मिल गई है।\n" * 4, "base64"),
        ("a NUL \x00 is never sent as 7bit\n", "quoted-printable"),
    ],
)
def test_the_transfer_encoding_fits_the_text(text: str, encoding: str) -> None:
    raw = mime.compose([mime.structured("To", ADDRESS)], mime.Body(text))
    message = read(raw)
    assert message["Content-Transfer-Encoding"] == encoding
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == text
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))


def test_a_plain_subject_is_folded_between_words() -> None:
    subject = "[TS-4812] " + " ".join(["harassment"] * 20)
    field = mime.unstructured("Subject", subject)
    assert "=?" not in field
    assert all(len(line) <= 78 for line in field.split("\r\n"))
    assert field.replace("\r\n", "") == f"Subject: {subject}"


def test_display_names_are_atoms_quoted_or_encoded() -> None:
    plain = mime.mailbox("From", "Trust and Safety", ADDRESS)
    assert plain == f"From: Trust and Safety <{ADDRESS}>"
    assert mime.mailbox("From", 'Desk, "T&S"', ADDRESS) == f'From: "Desk, \\"T&S\\"" <{ADDRESS}>'
    assert mime.mailbox("From", "", ADDRESS) == f"From: {ADDRESS}"
    encoded = mime.mailbox("From", "Zoë", ADDRESS)
    assert encoded == f"From: =?utf-8?q?Zo=C3=AB?= <{ADDRESS}>"


@pytest.mark.parametrize(
    "build",
    [
        lambda: mime.unstructured("Subject", "a\r\nBcc: x@victim.example"),
        lambda: mime.unstructured("Bcc: x@victim.example\r\nSubject", "a"),
        lambda: mime.mailbox("From", "a\nb", ADDRESS),
        lambda: mime.structured("References", "<a@b>\r\nBcc: x@victim.example"),
        lambda: mime.structured("References", "<é@b>"),
        lambda: mime.structured("References", ""),
    ],
)
def test_line_breaks_and_odd_values_are_refused(build: object) -> None:
    assert callable(build)
    with pytest.raises(UnsafeHeader):
        build()


def test_a_boundary_never_appears_in_the_parts() -> None:
    raw = mime.compose([mime.structured("To", ADDRESS)], mime.Body("text\n", "<p>html</p>\n"))
    message = read(raw)
    boundary = message.get_boundary()
    assert boundary is not None
    assert raw.count(f"--{boundary}".encode()) == 3
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


GOOD = (
    b"From: Desk <mentor4u@ecareermentor.in>\r\nTo: " + ADDRESS.encode() + b"\r\n"
    b"Subject: [TS-1]\r\n folded\r\nMIME-Version: 1.0\r\n\r\nbody\r\n"
)
EXPECTED = {"From", "To", "Subject", "MIME-Version"}


def test_the_read_back_accepts_what_we_write() -> None:
    verify_composed(GOOD, ADDRESS, EXPECTED)


@pytest.mark.parametrize(
    "raw",
    [
        GOOD.replace(b"To: ", b"To:\r\n\t"),  # the recipient on a continuation line
        GOOD.replace(b"Subject: [TS-1]", b"Subject: " + b"W" * 989),  # 998 characters
        GOOD.replace(b"MIME-Version:", b"M" * 76 + b":"),  # the longest field name allowed
        GOOD.replace(b"\r\n\r\nbody", b"\r\n\r\n\r\n\r\nbody"),  # blank lines in the body
    ],
)
def test_the_read_back_accepts_any_well_formed_block_of_our_fields(raw: bytes) -> None:
    verify_composed(raw, ADDRESS, EXPECTED | {"M" * 76})


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (GOOD.replace(b"[TS-1]", b"[TS-1]\nBcc: x@victim.example"), "bare line break"),
        (GOOD.replace(b"[TS-1]", b"[TS-1]\rBcc: x@victim.example"), "bare line break"),
        (GOOD.replace(b"Subject:", b"Bcc: x@victim.example\r\nSubject:"), "unexpected headers"),
        (GOOD.replace(b"Subject:", b"To: x@victim.example\r\nSubject:"), "two to fields"),
        (GOOD.replace(ADDRESS.encode(), b"x@victim.example"), "addressed to 'x@victim"),
        (GOOD.replace(ADDRESS.encode(), ADDRESS.encode() + b", x@victim.example"), "addressed to"),
        (b" folded first\r\n" + GOOD, "not a header field"),
        (GOOD.replace(b"Subject: [TS-1]", b"Subject: [TS-1] \xc3\xa9"), "not plain ascii"),
        (GOOD.replace(b"Subject: [TS-1]", b"Subject: " + b"W" * 1000), "overlong line"),
        (GOOD.replace(b"\r\n\r\n", b"\r\n"), "no end to its header block"),
        (GOOD.replace(b" folded", b" fol\rded"), "bare line break"),
        (GOOD.replace(b" folded", b" fol\nded"), "bare line break"),
        (GOOD.replace(b"Subject: [TS-1]", b"Subject: " + b"W" * 990), "overlong line"),
        (GOOD.replace(b"MIME-Version:", b"MIME-Version :"), "not a header field"),
        (GOOD.replace(b"1.0", b"1.0\r\nno colon"), "not a header field"),
        (GOOD.replace(b"MIME-Version:", b"M" * 77 + b":"), "not a header field"),
        (b"\r\n\r\n" + GOOD, "not a header field"),
        (GOOD.replace(b"Subject:", b"subject: x\r\nSubject:"), "two subject fields"),
    ],
)
def test_the_read_back_refuses_anything_else(raw: bytes, why: str) -> None:
    with pytest.raises(UnsafeHeader, match=f"(?i){why}"):
        verify_composed(raw, ADDRESS, EXPECTED)
