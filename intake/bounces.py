"""Reading a delivery report: who bounced, how hard, and which of our messages came back."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from email.message import Message

from casework.suppressions import BounceReport
from intake.parse import ParsedMessage

# Every repeat is bounded or confined to one line: these run on attacker-controlled text in
# the worker itself, so none may backtrack quadratically.
_STATUS = re.compile(r"^[ \t]*Status[ \t]*:[ \t]*([245])\.(\d{1,3})\.(\d{1,3})", re.I | re.M)
_ACTION = re.compile(r"^[ \t]*Action[ \t]*:[ \t]*([a-z-]{1,32})", re.I | re.M)
_RECIPIENT = re.compile(
    r"^[ \t]*(?:Final|Original)-Recipient[ \t]*:[ \t]*(?:rfc822|utf-8)?[ \t]*;?[ \t]*"
    r"<?([^\s<>;@]{1,64}@[^\s<>;@]{1,255})>?",
    re.I | re.M,
)
_ADDRESS = re.compile(r"[\w.+'-]{1,64}@[\w.-]{1,255}")
_ENHANCED_CODE = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_MESSAGE_ID = re.compile(r"<[^<>\s@]{1,200}@[^<>\s]{1,200}>")
_CASE_HEADER = re.compile(r"^[ \t]*X-SafetyDesk-Case[ \t]*:[ \t]*TS-(\d{1,12})", re.I | re.M)
_MAX_SCAN = 256 * 1024  # a report's useful part is at its start; never scan megabytes


def read_bounce(message: ParsedMessage, desk_domain: str) -> BounceReport:
    """The facts of a delivery report, from its DSN parts and, failing that, its text."""
    text = _report_text(message)
    statuses = [".".join(found) for found in _STATUS.findall(text)]
    if not statuses:
        statuses = [".".join(found) for found in _ENHANCED_CODE.findall(message.text[:_MAX_SCAN])]
    actions = [found.lower() for found in _ACTION.findall(text)]
    recipients = _unique(found.strip().lower() for found in _RECIPIENT.findall(text))
    ids = _unique(
        [
            *(found for found in _MESSAGE_ID.findall(text)),
            *(v for v in (message.in_reply_to, *message.references) if v),
        ]
    )
    domain = desk_domain.lower()
    addresses = _unique(
        found.lower() for found in _ADDRESS.findall(text) if found.lower().endswith("@" + domain)
    )
    return BounceReport(
        recipients=recipients,
        status=_pick_status(statuses),
        action=actions[0] if actions else "",
        message_ids=ids,
        case_ids=tuple(sorted({int(found) for found in _CASE_HEADER.findall(text)})),
        addresses=addresses,
    )


def _pick_status(statuses: list[str]) -> str:
    for status in statuses:
        if status.startswith("5"):
            return status
    return statuses[0] if statuses else ""


def _report_text(message: ParsedMessage) -> str:
    """The DSN fields and the returned headers, as text, whatever the MIME structure did."""
    chunks: list[str] = [message.text[:_MAX_SCAN]]
    for part in message.headers.walk():
        kind = part.get_content_type()
        if kind in {
            "message/delivery-status",
            "message/global-delivery-status",
            "message/rfc822",
            "message/global",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global-headers",
        }:
            chunks.append(_part_text(part))
    if len(chunks) == 1:  # no structure to go by: the raw report, as a bounce-reading MTA would
        chunks.append(message.raw[:_MAX_SCAN].decode("utf-8", "replace"))
    return "\n".join(chunks)[: 4 * _MAX_SCAN]


def _part_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join(_as_text(item) for item in payload if isinstance(item, Message))
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data[:_MAX_SCAN].decode("utf-8", "replace")
    return str(payload)[:_MAX_SCAN]


def _as_text(message: Message) -> str:
    try:
        return message.as_string(policy=email.policy.compat32)[:_MAX_SCAN]
    except Exception:  # a broken returned message still has readable header lines
        return "\n".join(f"{k}: {v}" for k, v in message.items())[:_MAX_SCAN]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)


__all__ = ["BounceReport", "read_bounce"]
