"""Signed reply tokens: `mentor4u+<token>@domain` names a case, a party and a recipient."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from casework.models import Party

_PARTY_CODES = {Party.REPORTER: "r", Party.SUBJECT: "s", Party.MODERATOR: "m", Party.MEMBER: "p"}
_CODE_PARTIES = {code: party for party, code in _PARTY_CODES.items()}
_TOKEN = re.compile(r"^(?P<case>\d{1,12})(?P<party>[rsmp])(?P<mac>[a-z2-7]{16})$")
_MAC_BYTES = 10  # 80 bits: unguessable, short enough for a local part (RFC 5321: 64 octets)


@dataclass(frozen=True)
class ReplyToken:
    """Who a reply address was issued to, for which case and which side of it."""

    case_id: int
    party: Party
    recipient: str


def _mac(secret: bytes, case_id: int, party: Party, recipient: str) -> str:
    message = f"{case_id}:{party.value}:{recipient.strip().lower()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def issue_token(secret: bytes, token: ReplyToken) -> str:
    mac = _mac(secret, token.case_id, token.party, token.recipient)
    return f"{token.case_id}{_PARTY_CODES[token.party]}{mac}"


def reply_address(desk_address: str, secret: bytes, token: ReplyToken) -> str:
    """The plus-address that routes a reply back to exactly this case, party and recipient."""
    local, _, domain = desk_address.partition("@")
    return f"{local}+{issue_token(secret, token)}@{domain}"


def read_token(secret: bytes, address: str, desk_address: str, recipient: str) -> ReplyToken | None:
    """The token carried by `address`, if it is ours and was issued to `recipient`; else None."""
    local, _, domain = address.strip().lower().partition("@")
    desk_local, _, desk_domain = desk_address.lower().partition("@")
    base, plus, tag = local.partition("+")
    if not plus or base != desk_local or domain != desk_domain:
        return None
    found = _TOKEN.match(tag)
    if found is None:
        return None
    party = _CODE_PARTIES[found["party"]]
    case_id = int(found["case"])
    expected = _mac(secret, case_id, party, recipient)
    if not hmac.compare_digest(expected, found["mac"]):
        return None
    return ReplyToken(case_id=case_id, party=party, recipient=recipient.strip().lower())


def find_token(
    secret: bytes, addresses: list[str], desk_address: str, recipient: str
) -> ReplyToken | None:
    """The first valid token among `addresses` (To, Cc, Delivered-To, X-Original-To)."""
    for address in addresses:
        token = read_token(secret, address, desk_address, recipient)
        if token is not None:
            return token
    return None
