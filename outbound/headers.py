"""Header safety: no text from a sender or moderator can add a header or recipient to our mail."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from email.message import Message
from email.parser import BytesHeaderParser

MAX_HEADER_TEXT = 400

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belong in a header.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class UnsafeHeader(ValueError):
    """A header value or message that could smuggle a header or recipient; it is not sent."""


def header_text(value: str, *, limit: int = MAX_HEADER_TEXT) -> str:
    """`value` as one harmless line of header text.

    Line breaks and controls become spaces; `=?` is broken up because the email package
    decodes RFC 2047 encoded words in values it is given, and an encoded CR LF would
    otherwise come out as a real line break. Long values are cut; the policy folds the rest.
    """
    text = _CONTROLS.sub(" ", value)
    text = text.replace("=?", "= ?")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# RFC 5321/5322 dot-atom local part and a hostname; no quoting, no comments, no encoded words.
_ADDRESS = re.compile(
    r"^(?!.*=\?)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$"
)


def check_address(address: str) -> str:
    """`address` when it is exactly one plain addr-spec, else UnsafeHeader."""
    if len(address) > 254 or len(address.partition("@")[0]) > 64 or not _ADDRESS.fullmatch(address):
        raise UnsafeHeader(f"not a single plain email address: {address[:80]!r}")
    return address


def verify_composed(raw: bytes, recipient: str, expected: set[str]) -> None:
    """Read our own message's header block back as a receiving server would; refuse surprises.

    The header names must be exactly those we set, with one value each, and the only
    recipient must be `recipient`. Only the header block is read: that is where a smuggled
    header or recipient would be, and reading the body again would double the cost.
    """
    parsed: Message = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    names = [name.lower() for name in parsed.keys()]  # noqa: SIM118 (Message is not a Mapping)
    if len(names) != len(set(names)) or set(names) - {e.lower() for e in expected}:
        raise UnsafeHeader(f"unexpected headers in outbound message: {sorted(names)}")
    for name in ("cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
        if name in names:
            raise UnsafeHeader(f"outbound message carries a {name} header")
    to = parsed.get_all("To", [])
    addresses = [a for _, a in email.utils.getaddresses([str(v) for v in to])]
    if [a.lower() for a in addresses] != [recipient.lower()]:
        raise UnsafeHeader(f"outbound message is addressed to {addresses!r}, not {recipient!r}")
