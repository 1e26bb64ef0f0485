"""Our own outbound messages as MIME bytes, written directly from values we have already checked."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from outbound.headers import CONTROLS, UnsafeHeader

CRLF = "\r\n"
# RFC 5322 §2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
FOLD_AT = 78
MAX_LINE = 998
# RFC 2047 §2: an encoded word is at most 75 characters.
_WORD_MAX = 75
_Q_PREFIX = "=?utf-8?q?"
_Q_SUFFIX = "?="
# RFC 2047 §5(3): the characters an encoded word may carry as themselves, even inside a phrase.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_ASCII = bytes(range(128))
# A display name of atoms and spaces needs no quoting (RFC 5322 §3.2.3 atext).
_ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$")


@dataclass(frozen=True)
class Body:
    """The text a message carries, with an optional HTML alternative."""

    text: str
    html: str | None = None


def compose(fields: Sequence[str], body: Body, draw: Callable[[int], bytes] = os.urandom) -> bytes:
    """The whole message: header fields made by the functions below, then the MIME body; a
    multipart boundary is made of bytes from `draw`."""
    lines = [*fields, "MIME-Version: 1.0"]
    if body.html is None:
        head, content = _part("plain", body.text)
        return _join(lines, head, content)
    text_head, text_content = _part("plain", body.text)
    html_head, html_content = _part("html", body.html)
    boundary = _boundary(draw, text_content, html_content)
    # Each part keeps its final line break; the one before a delimiter belongs to the delimiter.
    multipart = (
        f"--{boundary}{CRLF}{CRLF.join(text_head)}{CRLF}{CRLF}{text_content}{CRLF}"
        f"--{boundary}{CRLF}{CRLF.join(html_head)}{CRLF}{CRLF}{html_content}{CRLF}"
        f"--{boundary}--{CRLF}"
    )
    content_type = f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"'
    return _join(lines, [content_type], multipart)


def unstructured(name: str, value: str) -> str:
    """`Name: value` for free text, in lines of at most 78 characters where it can be.

    Text that is not plain ASCII, that would read as an encoded word, or that holds a word too
    long to fold is written as RFC 2047 encoded words, which any reader decodes back to it
    exactly; plain text is folded between words, and runs of spaces in it become one.
    """
    _check(name, value)
    if _needs_encoding(name, value):
        return f"{name}: " + _encoded_words(value, len(name) + 2)
    return fold_words(f"{name}:", value.split(" "))


def structured(name: str, *words: str) -> str:
    """`Name: word word ...` for dates, message ids and addresses: ASCII, never encoded."""
    _check(name, " ".join(words))
    if not all(word.isascii() and 0 < len(word) < MAX_LINE - 2 for word in words):
        raise UnsafeHeader(f"the {name} header takes short ASCII words only")
    return fold_words(f"{name}:", words)


def mailbox(name: str, display_name: str, addr_spec: str) -> str:
    """`Name: display name <addr_spec>`: the name as atoms, quoted, or encoded words.

    `addr_spec` must already be a checked plain address (see `headers.check_address`).
    """
    _check(name, display_name + addr_spec)
    text = " ".join(display_name.split())
    if not text:
        return structured(name, addr_spec)
    if not text.isascii() or "=?" in text:
        # A phrase may hold encoded words only as whole words, each within the phrase rules.
        words = _encoded_words(text, len(name) + 2, separator=" ").split(" ")
    elif _ATOMS.fullmatch(text):
        words = text.split(" ")
    else:
        words = ['"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return fold_words(f"{name}:", [*words, f"<{addr_spec}>"])


def fold_words(start: str, words: Sequence[str]) -> str:
    """`start` and then `words`, separated by spaces, with a line break before any word that
    would take its line past 78 characters."""
    lines: list[str] = []
    line = start
    for word in words:
        if not word:
            continue
        if len(line) + 1 + len(word) > FOLD_AT and line != start:
            lines.append(line)
            line = " " + word
        else:
            line = f"{line} {word}"
    lines.append(line)
    return CRLF.join(lines)


def _check(name: str, value: str) -> None:
    if not _NAME.fullmatch(name):
        raise UnsafeHeader(f"not a header name: {name[:80]!r}")
    if CONTROLS.search(value):
        raise UnsafeHeader(f"control character in the {name} header")


def _needs_encoding(name: str, value: str) -> bool:
    if not value.isascii() or "=?" in value:
        return True
    longest = max((len(word) for word in value.split(" ")), default=0)
    return longest + len(name) + 2 > FOLD_AT


def _encoded_words(text: str, first_used: int, *, separator: str = CRLF + " ") -> str:
    """`text` as Q-encoded UTF-8 words of at most 75 characters, split between characters.

    Readers ignore the white space between adjacent encoded words, so the decoded value is
    exactly `text`, spaces included (they are encoded as `_`).
    """
    budget = _WORD_MAX - len(_Q_PREFIX) - len(_Q_SUFFIX)
    first_budget = min(budget, FOLD_AT - first_used - len(_Q_PREFIX) - len(_Q_SUFFIX))
    words: list[str] = []
    current: list[str] = []
    used = 0
    limit = first_budget
    for char in text:
        encoded = _q_char(char)
        if used + len(encoded) > limit and current:
            words.append(_Q_PREFIX + "".join(current) + _Q_SUFFIX)
            current, used, limit = [], 0, budget
        current.append(encoded)
        used += len(encoded)
    words.append(_Q_PREFIX + "".join(current) + _Q_SUFFIX)
    return separator.join(words)


def _q_char(char: str) -> str:
    if char in _Q_SAFE:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _part(subtype: str, text: str) -> tuple[list[str], str]:
    """The Content-Type and Content-Transfer-Encoding lines of one text part, and its content."""
    data = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    head = [f'Content-Type: text/{subtype}; charset="utf-8"']
    # RFC 2045 §2.7: 7bit data is short lines of ASCII with no NUL.
    seven_bit = data.isascii() and b"\x00" not in data
    if seven_bit and all(len(line) <= FOLD_AT for line in data.split(b"\r\n")):
        return [*head, "Content-Transfer-Encoding: 7bit"], data.decode("ascii")
    if len(data.translate(None, _ASCII)) * 3 > len(data):
        # Mostly non-Latin text: base64 is the smaller of the two.
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        return [*head, "Content-Transfer-Encoding: base64"], encoded.decode("ascii")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return [*head, "Content-Transfer-Encoding: quoted-printable"], encoded.decode("ascii")


def _boundary(draw: Callable[[int], bytes], *contents: str) -> str:
    while True:
        boundary = f"=_{draw(16).hex()}"
        if not any(boundary in content for content in contents):
            return boundary


def _join(header_lines: list[str], content_head: list[str], content: str) -> bytes:
    block = CRLF.join([*header_lines, *content_head])
    return f"{block}{CRLF}{CRLF}{content}".encode("ascii")
