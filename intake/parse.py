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
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message

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

    def header(self, name: str) -> str:
        """The first value of header `name` as text, or ''."""
        value = self.headers.get(name)
        return "" if value is None else _header_text(value)

    def header_values(self, name: str) -> list[str]:
        return [_header_text(v) for v in self.headers.get_all(name, [])]


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


_MSGID = re.compile(r"<[^<>\s]+>")


def _header_text(value: object) -> str:
    text = str(value)
    return text.replace("\r", " ").replace("\n", " ").strip()


def read_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block alone (cheap; used for dedupe before parsing)."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    cut = min(x for x in (end, end2, len(raw)) if x >= 0)
    headers = email.message_from_bytes(raw[: cut + 2], policy=email.policy.compat32)
    return normalise_message_id(headers.get("Message-ID"))


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


def _addresses(values: list[str]) -> tuple[str, ...]:
    found = email.utils.getaddresses(values)
    return tuple(addr.strip().lower() for _, addr in found if "@" in addr)


def parse_message(raw: bytes, *, max_bytes: int) -> ParsedMessage:
    """Parse `raw`; over `max_bytes` only the headers and the start of the body are read."""
    truncated = len(raw) > max_bytes
    data = _truncate(raw, max_bytes) if truncated else raw
    headers = email.message_from_bytes(data, policy=email.policy.compat32)
    parsed = mailparser.parse_from_bytes(data)
    from_name, from_address = (_no_nul(part) for part in _first_address(headers))
    text = _no_nul("\n".join(parsed.text_plain).strip())
    body_html = _no_nul("\n".join(parsed.text_html).strip())
    if not text and body_html:
        text = html_to_text(body_html)
    attachments = tuple(_attachment(a) for a in parsed.attachments)
    defects = tuple(sorted(parsed.defects_categories))
    date = parsed.date if isinstance(parsed.date, datetime) else None
    subject = _no_nul(_decoded(headers.get("Subject", "")))
    return ParsedMessage(
        raw=raw,
        sha256=sha256_of(raw),
        message_id=normalise_message_id(headers.get("Message-ID")),
        from_address=from_address,
        from_name=from_name,
        to_addresses=_addresses([_no_nul(_decoded(v)) for v in headers.get_all("To", [])]),
        cc_addresses=_addresses([_no_nul(_decoded(v)) for v in headers.get_all("Cc", [])]),
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


def _first_address(headers: Message) -> tuple[str, str]:
    for name in ("From", "Sender", "Reply-To"):
        for display, address in email.utils.getaddresses(
            [_decoded(v) for v in headers.get_all(name, [])]
        ):
            if "@" in address:
                return display.strip()[:300], address.strip().lower()[:320]
    return "", ""


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
