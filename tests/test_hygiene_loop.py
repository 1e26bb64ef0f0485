"""Two auto-responders, ours and one that answers everything unmarked, exchange a bounded amount."""

from __future__ import annotations

import email.policy
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.credentials import Tls
from casework.models import OutboxMessage, OutboxStatus
from intake.pipeline import SourceRef
from outbound.smtp import SmtpTransport
from scheduler.app import App, build_app
from tests.conftest import MODERATORS, SettingsFactory
from tests.hygiene_mail import make_plain_answer
from tests.mail import make_mail
from tests.smtp_server import serving

STRANGER = "responder@example.net"
PER_ADDRESS_CAP = 3
MODERATOR_CAP = 6


class AnswerEverything:
    """An aiosmtpd handler that answers every message, as each recipient, with nothing marked.

    `thread` decides whether its answers are replies (Re:, In-Reply-To, to Reply-To) or
    fresh messages to the desk's public address, which the desk cannot tie to anything.
    """

    def __init__(self, *, thread: bool) -> None:
        self.thread = thread
        self.received: list[tuple[str, EmailMessage]] = []
        self.answers: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            for recipient in envelope.rcpt_tos:
                self.received.append((recipient, message))
                self.answers.append(make_plain_answer(message, recipient, thread=self.thread))
        return "250 OK"

    def take_answers(self) -> list[bytes]:
        with self._lock:
            taken, self.answers = self.answers, []
        return taken


@pytest.fixture(params=[True, False], ids=["threaded-answers", "fresh-messages"])
def responder(request: pytest.FixtureRequest) -> Iterator[tuple[AnswerEverything, int]]:
    handler = AnswerEverything(thread=request.param)
    with serving(handler) as controller:
        yield handler, controller.port


@pytest.fixture
def desk(
    make_settings: SettingsFactory, db_url: str, responder: tuple[AnswerEverything, int]
) -> Iterator[App]:
    _, port = responder
    settings = make_settings(
        db_url,
        hygiene={
            "per_address_cap": PER_ADDRESS_CAP,
            "per_address_window": "PT1H",
            "moderator_cap": MODERATOR_CAP,
        },
    )
    app = build_app(
        settings, migrate=True, transport=SmtpTransport(host="127.0.0.1", port=port, tls=Tls.NONE)
    )
    yield app
    app.engine.dispose()


def test_an_unmarked_auto_responder_cannot_loop_with_the_desk(
    desk: App, responder: tuple[AnswerEverything, int], clock: FixedClock
) -> None:
    handler, _ = responder
    desk.pipeline.process(make_mail(STRANGER), SourceRef(label="first"), clock.now())
    rounds = 90  # a minute apart: an hour and a half of the two machines talking
    per_round: list[int] = []
    for n in range(rounds):
        before = len(handler.received)
        desk.deliverer.flush(clock.now())
        per_round.append(len(handler.received) - before)
        for answer in handler.take_answers():
            desk.pipeline.process(answer, SourceRef(label=f"answer-{n}"), clock.now())
        clock.move_to(clock.now() + timedelta(minutes=1))

    received = [recipient for recipient, _ in handler.received]
    people = [STRANGER, *MODERATORS]
    # Within any hour: at most the caps; over the run (two windows), at most twice that.
    bound = 2 * (PER_ADDRESS_CAP + MODERATOR_CAP * len(MODERATORS))
    assert len(received) <= bound, per_round
    assert received.count(STRANGER) <= 2 * PER_ADDRESS_CAP
    assert set(received) <= set(people)
    for start in range(rounds - 60):
        assert sum(per_round[start : start + 60]) <= bound // 2, per_round
    if handler.thread:
        # Answers to our mail are tied to their case by token or thread: nothing to answer.
        assert received.count(STRANGER) == 1
        assert sum(per_round[5:]) == 0, per_round
    else:
        # Fresh messages open cases; the caps hold the rest, and nothing is lost.
        with desk.sessions() as session:
            held = session.scalars(
                select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.HELD)
            ).all()
        assert held
        assert {row.last_error.split(":")[0] for row in held} == {"held"}
