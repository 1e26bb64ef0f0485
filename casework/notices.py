"""What the domain asks to be emailed, and the port through which it is queued."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.orm import Session

from casework.models import Party

# Every email the desk sends names the desk in this header; seeing it come in means a loop.
LOOP_HEADER = "X-SafetyDesk-Loop"


def make_message_id(domain: str, draw: Callable[[int], bytes] = os.urandom) -> str:
    """A Message-ID of the form only the desk writes: 32 random hex digits (16 bytes from
    `draw`) at the desk's domain."""
    return f"<{draw(16).hex()}@{domain}>"


def is_our_message_id(value: str | None, domain: str) -> bool:
    """True for a Message-ID that `make_message_id` could have written for `domain`."""
    if not value:
        return False
    found = _OUR_MESSAGE_ID.fullmatch(value.strip().lower())
    return found is not None and found.group(1) == domain.lower()


_OUR_MESSAGE_ID = re.compile(r"<[0-9a-f]{32}@([^<>@\s]+)>")


class AutoSubmitted(StrEnum):
    """RFC 3834 Auto-Submitted values the desk puts on its own mail."""

    NO = "no"
    AUTO_REPLIED = "auto-replied"
    AUTO_GENERATED = "auto-generated"


@dataclass(frozen=True)
class Notice:
    """One email to one recipient, named by template, with the facts the template needs."""

    template: str
    recipient: str
    party: Party
    case_id: int | None
    context: Mapping[str, Any] = field(default_factory=dict)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: AutoSubmitted = AutoSubmitted.AUTO_GENERATED
    # Element name -> the exact sentence the rendered text must contain (sanction notices).
    elements: Mapping[str, str] = field(default_factory=dict)


class NoticeRefused(Exception):
    """A notice that misses a required element; it is never queued."""


def check_elements(notice: Notice, text: str) -> None:
    """Refuse a notice whose facts or rendered text miss a required element (DESIGN.md)."""
    if not notice.elements:  # most notices: no need to flatten the text
        return
    flat = " ".join(text.split())
    for name, sentence in notice.elements.items():
        wanted = " ".join(sentence.split())
        if not wanted:
            raise NoticeRefused(f"{notice.template} to {notice.recipient}: no {name} given")
        if wanted not in flat:
            raise NoticeRefused(
                f"{notice.template} to {notice.recipient}: the text does not state the {name}"
            )


class NoticeSink(Protocol):
    """Queues a notice in the outbox inside the caller's transaction."""

    def queue(self, session: Session, notice: Notice, now: datetime) -> None: ...

    def queue_to_each(
        self, session: Session, notice: Notice, recipients: Sequence[str], now: datetime
    ) -> None:
        """`notice` to each of `recipients` in turn, in place of its own recipient."""
        ...
