"""Building test messages as raw bytes, the way a mail client would send them."""

from __future__ import annotations

import email.policy
import email.utils
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

DESK = "mentor4u@ecareermentor.in"


def make_mail(
    sender: str = "priya.student@example.com",
    subject: str = "Mentor asked me to pay on WhatsApp",
    body: str = "My mentor karan.mentor@example.com asked me to pay him directly on WhatsApp.",
    *,
    to: str = DESK,
    name: str = "",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    date: datetime | None = None,
) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = email.utils.formataddr((name, sender)) if name else sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(date or datetime(2027, 1, 4, 8, 55, tzinfo=UTC))
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@client.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body)
    for filename, content_type, data in attachments or []:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
