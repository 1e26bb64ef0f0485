"""Header safety: no text from a sender or moderator can add a header or recipient to our mail."""

from __future__ import annotations

import re

MAX_HEADER_TEXT = 400

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belong in a header.
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# RFC 5322 §3.6.8: printable ASCII except the colon.
_FIELD_NAME = rb"[!-9;-~]{1,76}"
# One header field: its name, and its value with any continuation lines (CR LF, then a space or
# a tab), up to the CR LF that ends it or the end of the block. Neither holds a bare CR or LF.
_FIELD = re.compile(rb"(%s):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)(?:\r\n|\Z)" % _FIELD_NAME)


class UnsafeHeader(ValueError):
    """A header value or message that could smuggle a header or recipient; it is not sent."""


def header_text(value: str, *, limit: int = MAX_HEADER_TEXT) -> str:
    """`value` as one harmless line of header text.

    Line breaks and controls become spaces, and `=?` is broken up so that no text from a sender
    or moderator can be read as an RFC 2047 encoded word (an encoded CR LF, say) by the
    recipient's mail program. Long values are cut; the MIME writer folds the rest.
    """
    text = CONTROLS.sub(" ", value)
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
    """Read our own message's header block back as strictly as any receiver could; refuse surprises.

    Every line must end in CR LF, with no bare CR, LF or NUL and nothing but ASCII; the header
    names must be exactly those we set, with one field each; and `To` must be `recipient` alone.
    Only the header block is read: that is where a smuggled header or recipient would be.
    """
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise UnsafeHeader("outbound message has no end to its header block")
    block = raw[:end]
    if not block.isascii() or b"\x00" in block:
        raise UnsafeHeader("outbound header block is not plain ASCII")
    breaks = block.count(b"\r\n")
    if block.count(b"\r") != breaks or block.count(b"\n") != breaks:
        raise UnsafeHeader("outbound header block has a bare line break")
    if max(map(len, block.split(b"\r\n"))) > 998:  # RFC 5322 §2.1.1, CR LF excluded
        raise UnsafeHeader("outbound header block has an overlong line")
    fields: dict[str, bytes] = {}
    at = 0
    while True:  # the block stops short of the first blank line: it never ends in CR LF
        field = _FIELD.match(block, at)
        if field is None:
            line = block[at:].split(b"\r\n", 1)[0]
            raise UnsafeHeader(f"not a header field in outbound message: {line[:80]!r}")
        name = field[1].decode("ascii").lower()
        if name in fields:
            raise UnsafeHeader(f"outbound message carries two {name} fields")
        fields[name] = field[2].replace(b"\r\n", b"")
        at = field.end()
        if at >= len(block):
            break
    unexpected = set(fields) - {e.lower() for e in expected}
    if unexpected:
        raise UnsafeHeader(f"unexpected headers in outbound message: {sorted(unexpected)}")
    to = fields.get("to", b"").decode("ascii").strip()
    if to.lower() != recipient.lower():
        raise UnsafeHeader(f"outbound message is addressed to {to!r}, not {recipient!r}")
