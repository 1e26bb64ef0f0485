"""Building delivery reports about our own outbox messages, the way receiving MTAs do."""

from __future__ import annotations

import email.policy
import uuid
from email.message import EmailMessage

DESK = "mentor4u@ecareermentor.in"


def make_dsn(
    original: bytes,
    recipient: str,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    headers_only: bool = False,
    strip_message_id: bool = False,
    strip_case_header: bool = False,
) -> bytes:
    """An RFC 3464 multipart/report returning `original` (or its headers) to the desk."""
    returned = original.replace(b"\r\n", b"\n")
    stripped = (b"message-id:",) * strip_message_id + (b"x-safetydesk-case:",) * strip_case_header
    if stripped:
        returned = b"\n".join(
            line for line in returned.split(b"\n") if not line.lower().startswith(stripped)
        )
    if headers_only:
        returned_part = (
            b"Content-Type: text/rfc822-headers\n\n" + returned.split(b"\n\n", 1)[0] + b"\n"
        )
    else:
        returned_part = b"Content-Type: message/rfc822\n\n" + returned
    boundary = uuid.uuid4().hex
    head = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {DESK}
Subject: Undelivered Mail Returned to Sender
Message-ID: <{uuid.uuid4().hex}.bounce@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain

I'm sorry, your message to <{recipient}> could not be delivered.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} user unknown

--{boundary}
"""
    return head.encode() + returned_part + f"\n--{boundary}--\n".encode()


def make_plain_answer(original: EmailMessage, sender: str, *, thread: bool) -> bytes:
    """A naive responder's answer: no Auto-Submitted, no Precedence, nothing automatic.

    Threaded answers go to Reply-To as replies; the others are new messages to the desk's
    public address that carry nothing the desk could tie to what it sent.
    """
    answer = EmailMessage(policy=email.policy.SMTP)
    answer["From"] = sender
    answer["To"] = str(original.get("Reply-To") or original.get("From")) if thread else DESK
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@responder.example>"
    if thread:
        answer["Subject"] = f"Re: {original.get('Subject', '')}"
        answer["In-Reply-To"] = str(original.get("Message-ID", ""))
        answer["References"] = str(original.get("Message-ID", ""))
    else:
        answer["Subject"] = "Thank you for your email"
    answer.set_content("Thank you for your message. We will get back to you.\n")
    return answer.as_bytes()


def make_arf(original: bytes) -> bytes:
    """An RFC 5965 abuse report about `original`, as a mailbox provider sends it."""
    boundary = uuid.uuid4().hex
    head = f"""From: staff@feedback.example.net
To: {DESK}
Subject: FW: complaint
Message-ID: <{uuid.uuid4().hex}@feedback.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"

--{boundary}
Content-Type: text/plain

This is an email abuse report.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Example-FBL/1.0
Version: 1

--{boundary}
Content-Type: message/rfc822

"""
    return head.encode() + original.replace(b"\r\n", b"\n") + f"\n--{boundary}--\n".encode()
