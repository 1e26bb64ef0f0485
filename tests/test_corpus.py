"""Every real-world sample goes in without crashing the worker, and none is lost."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.models import Case, Disposition, InboundMessage, QuarantineEntry
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App
from tests.conftest import CORPUS

SAMPLES = sorted(
    path
    for folder in ("cpython-email", "mail-parser")
    for path in (CORPUS / folder).iterdir()
    if path.is_file() and not path.name.startswith(("LICENSE", "NOTICE"))
)


def test_the_corpus_is_there() -> None:
    assert len(SAMPLES) == 49 + 23


@pytest.mark.slow
def test_every_sample_becomes_a_record_and_none_is_lost(app: App, clock: FixedClock) -> None:
    outcomes: Counter[Outcome] = Counter()
    for path in SAMPLES:
        result = app.pipeline.process(path.read_bytes(), SourceRef(label=str(path)), clock.now())
        outcomes[result.outcome] += 1
    with app.sessions() as session:
        inbound = session.scalar(select(func.count()).select_from(InboundMessage))
        quarantined = session.scalar(select(func.count()).select_from(QuarantineEntry))
        cases = session.scalar(select(func.count()).select_from(Case))
        dispositions = Counter(session.scalars(select(InboundMessage.disposition)))
        stored = set(session.scalars(select(InboundMessage.sha256))) | set(
            session.scalars(select(QuarantineEntry.sha256))
        )
    assert inbound + quarantined == len(SAMPLES)
    assert sum(outcomes.values()) == len(SAMPLES)
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in SAMPLES} <= stored
    assert cases == dispositions[Disposition.NEW_CASE] + 0
    # Bounces and reports in the corpus (msg_05, 16, 25, 43, mail_malformed_2) open no case.
    assert dispositions[Disposition.AUTOMATED] >= 5
    assert cases >= 40
    assert outcomes[Outcome.QUARANTINED] == quarantined


def test_a_sample_is_stored_byte_for_byte(app: App, clock: FixedClock) -> None:
    path = CORPUS / "mail-parser" / "mail_test_3"
    raw = path.read_bytes()
    app.pipeline.process(raw, SourceRef(label=str(path)), clock.now())
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert row.raw == raw and row.subject == "Hi there"
        assert row.from_address == "oneil.844@randtelekom.com.tr"
