"""Turning raw message bytes into a ParsedMessage, whatever state the MIME is in."""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from functools import cached_property

import mailparser

from casework.clock import as_utc

log = logging.getLogger(__name__)

# mail-parser logs every content type it does not decode; that is noise, not news.
logging.getLogger("mailparser").setLevel(logging.ERROR)


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ParsedMessage:
    """What the desk reads from one message; `headers` keeps the original header block."""

    raw: bytes
    sha256: str
    message_id: str | None
    from_address: str
    from_name: str
    to_addresses: tuple[str, ...]
    cc_addresses: tuple[str, ...]
    subject: str
    date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str
    html: str
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    headers: Message = field(compare=False, repr=False)
    truncated: bool = False

    @cached_property
    def header_names(self) -> frozenset[str]:
        """The names of the headers present, lowered. Most headers asked about are absent, and
        asking `headers` reads through all of them, lowering each name, every time."""
        return frozenset(name.lower() for name in self.headers.keys())  # noqa: SIM118

    def header(self, name: str) -> str:
        """The first value of header `name` as text, or ''."""
        if name.lower() not in self.header_names:
            return ""
        value = self.headers.get(name)
        return "" if value is None else _header_text(value)

    def header_values(self, name: str) -> list[str]:
        if name.lower() not in self.header_names:
            return []
        return [_header_text(v) for v in self.headers.get_all(name, [])]


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


_MSGID = re.compile(r"<[^<>\s]+>")


def _header_text(value: object) -> str:
    text = str(value)
    return text.replace("\r", " ").replace("\n", " ").strip()


def normalise_message_id(value: object) -> str | None:
    if value is None:
        return None
    value = _no_nul(str(value))
    found = _MSGID.search(value)
    if found:
        return found.group(0)[:998]
    text = str(value).strip()
    return f"<{text}>"[:998] if text and " " not in text else None


def _ids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID.findall(_no_nul(value)))


def _no_nul(text: str) -> str:
    """Text without U+0000: RFC 5322 forbids NUL in a message, and PostgreSQL text columns
    cannot store it, so a stray one (raw, or decoded from base64 or an encoded word) is dropped
    here rather than sending the whole message to quarantine. The raw bytes keep it."""
    return text.replace("\x00", "")


def _addresses(values: Sequence[object]) -> tuple[str, ...]:
    """Recipient addresses, split before decoding (see _first_address)."""
    found = email.utils.getaddresses([_raw_text(v) for v in values])
    return tuple(addr.strip().lower() for _, addr in found if _plain_address(addr))


def parse_message(raw: bytes, *, max_bytes: int, max_attachment_bytes: int) -> ParsedMessage:
    """Parse `raw`; over `max_bytes` only the headers and the start of the body are read."""
    truncated = len(raw) > max_bytes
    data = _truncate(raw, max_bytes) if truncated else raw
    headers = email.message_from_bytes(data, policy=email.policy.compat32)
    from_name, from_address = (_no_nul(part) for part in _first_address(headers))
    reading = read_body(headers, max_attachment_bytes)
    text, body_html = _no_nul(reading.text), _no_nul(reading.html)
    if not text and body_html:
        text = html_to_text(body_html)
    attachments = reading.attachments
    defects = reading.defects
    date = reading.date
    subject = _no_nul(_decoded(headers.get("Subject", "")))
    return ParsedMessage(
        raw=raw,
        sha256=sha256_of(raw),
        message_id=normalise_message_id(headers.get("Message-ID")),
        from_address=from_address,
        from_name=from_name,
        to_addresses=_addresses(headers.get_all("To", [])),
        cc_addresses=_addresses(headers.get_all("Cc", [])),
        subject=" ".join(subject.split())[:998],
        date=as_utc(date) if date else None,
        in_reply_to=normalise_message_id(headers.get("In-Reply-To")),
        references=_ids(str(headers.get("References", ""))),
        text=text,
        html=body_html,
        attachments=attachments,
        defects=defects,
        headers=headers,
        truncated=truncated,
    )


class _BodyReader(mailparser.MailParser):  # type: ignore[misc]
    """mail-parser's reading of a message, without the two summaries of every header and part
    (`mail`, `mail_partial`) it builds at the end of each parse: the desk reads only the text,
    HTML, attachments, defects and date, and those summaries took a ninth of a parse."""

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return {}


@dataclass(frozen=True)
class BodyReading:
    """The readable content of a message: text, HTML, attachments and what was wrong with it."""

    text: str
    html: str
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]
    date: datetime | None


def read_body(headers: Message, max_attachment_bytes: int) -> BodyReading:
    """mail-parser's reading of the message `headers` holds (parsed once, by the caller); the
    standard library's when mail-parser fails."""
    try:
        parsed = _BodyReader(headers)
        text = "\n".join(parsed.text_plain).strip()
        body_html = "\n".join(parsed.text_html).strip()
        attachments = [_attachment(a) for a in parsed.attachments]
        defects = set(parsed.defects_categories)
        date = parsed.date if isinstance(parsed.date, datetime) else None
    except Exception as error:  # mail-parser has crashed on real bounces; read it ourselves
        text, body_html, attachments, defects = _stdlib_reading(headers)
        defects.add(f"MailParserFailed: {type(error).__name__}")
        date = _header_date(headers)
    # Only names, types, sizes and hashes are kept; an oversized one is marked on the record.
    if any(attachment.size > max_attachment_bytes for attachment in attachments):
        defects.add("AttachmentOverLimit")
    return BodyReading(text, body_html, tuple(attachments), tuple(sorted(defects)), date)


def _stdlib_reading(
    headers: Message,
) -> tuple[str, str, list[AttachmentInfo], set[str]]:
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[AttachmentInfo] = []
    defects: set[str] = set()
    for part in headers.walk():
        defects.update(type(d).__name__ for d in getattr(part, "defects", []))
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        kind = part.get_content_type()
        if filename or part.get_content_disposition() == "attachment":
            attachments.append(
                AttachmentInfo(
                    filename=_decoded(filename or "")[:500],
                    content_type=kind[:200],
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
        elif kind in ("text/plain", "text/html"):
            charset = part.get_content_charset() or "utf-8"
            try:
                decoded = data.decode(charset, "replace")
            except LookupError:
                defects.add("UnknownCharset")
                decoded = data.decode("utf-8", "replace")
            (htmls if kind == "text/html" else texts).append(decoded)
    return "\n".join(texts).strip(), "\n".join(htmls).strip(), attachments, defects


def _header_date(headers: Message) -> datetime | None:
    try:
        value = headers.get("Date")
        return email.utils.parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _first_address(headers: Message) -> tuple[str, str]:
    """The sender's name and address.

    RFC 2047 §5: encoded words may stand for a display name, never for an address, so the
    header is split into addresses *before* anything is decoded; decoding first would let
    an encoded "Evil\r\nBcc: x@example.org" in a name become an address of its own.
    Only when no plain address is found (some mailers encode the whole header) is the
    decoded text tried, and then only a single well-formed address is accepted.
    """
    for name in ("From", "Sender", "Reply-To"):
        values = [_raw_text(v) for v in headers.get_all(name, [])]
        for display, address in email.utils.getaddresses(values):
            if _plain_address(address):
                return _display(_decoded(display)), address.strip().lower()[:320]
        found = [
            (display, address)
            for display, address in email.utils.getaddresses([_decoded(v) for v in values])
            if _plain_address(address)
        ]
        if len(found) == 1:
            return _display(found[0][0]), found[0][1].strip().lower()[:320]
    return "", ""


_PLAIN_ADDRESS = re.compile(r"^(?!.*=\?)[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]{1,200}@[\w.-]{1,255}$")


def _plain_address(address: str) -> bool:
    return _PLAIN_ADDRESS.fullmatch(address.strip()) is not None


def _display(name: str) -> str:
    return " ".join(name.split())[:300]


def _raw_text(value: object) -> str:
    """A header value as it was written (8-bit bytes kept as surrogate escapes are replaced)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _decoded(value: object) -> str:
    """An RFC 2047 header value as text; undecodable words are kept as they are."""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeDecodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


DEFAULT_TYPE = "application/octet-stream"


def _attachment(item: dict[str, object]) -> AttachmentInfo:
    payload = item.get("payload")
    text = payload if isinstance(payload, str) else ""
    data = text.encode("utf-8", "replace")
    if item.get("binary"):
        with contextlib.suppress(ValueError, binascii.Error):
            data = base64.b64decode(text, validate=False)
    return AttachmentInfo(
        filename=_no_nul(str(item.get("filename") or ""))[:500],
        content_type=_no_nul(str(item.get("mail_content_type") or DEFAULT_TYPE))[:200],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _truncate(raw: bytes, max_bytes: int) -> bytes:
    return raw[:max_bytes]


_TAGS = re.compile(r"<[^>]*>")
_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)


def html_to_text(markup: str) -> str:
    """A plain-text reading of an HTML body; nothing of it is ever rendered."""
    text = _DROP.sub("", markup)
    text = _BREAKS.sub("\n", text)
    text = html.unescape(_TAGS.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
