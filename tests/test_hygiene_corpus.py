"""Every corpus message through classification and the whole pipeline: no crash, no answer."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.models import Case, InboundMessage, OutboxMessage, QuarantineEntry
from intake.classify import ClassifyContext, classify
from intake.parse import parse_message
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App
from tests.conftest import CORPUS

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
CONTEXT = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
BOUNCES = CORPUS / "bounces"
NOT_MESSAGES = {"LICENSE", "LICENSE.txt", "NOTICE.txt", "README.md", "SHA256SUMS"}


def corpus_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in NOT_MESSAGES and p.suffix not in {".json", ".tsv"}
    )


def _is_negative(path: Path) -> bool:
    return "not-bounce" in path.parts


AUTOMATED = [p for p in corpus_files(BOUNCES) if not _is_negative(p)]
NEGATIVE = [p for p in corpus_files(BOUNCES) if _is_negative(p)]
CRLF = sorted((BOUNCES / "sisimai-crlf").glob("*.eml"))


def _classify(path: Path) -> tuple[str, str]:
    found = classify(parse_message(path.read_bytes(), max_bytes=25 * 1024 * 1024), CONTEXT)
    return found.verdict.value, found.rule


def test_the_corpus_is_there() -> None:
    assert len(AUTOMATED) > 390
    assert len(NEGATIVE) == 1
    assert len(CRLF) == 68


@pytest.mark.parametrize("path", AUTOMATED, ids=lambda p: str(p.relative_to(BOUNCES)))
def test_every_bounce_auto_reply_and_complaint_is_automated(path: Path) -> None:
    verdict, rule = _classify(path)
    assert verdict != "human", f"{path.name} looked human"
    assert rule


@pytest.mark.parametrize("path", NEGATIVE, ids=lambda p: p.name)
def test_the_ordinary_mail_among_the_bounces_is_human(path: Path) -> None:
    assert _classify(path) == ("human", "no-automation-signs")


@pytest.mark.parametrize("path", CRLF, ids=lambda p: p.name)
def test_crlf_twins_classify_like_their_lf_originals(path: Path) -> None:
    """The twin, its own LF rendering and the same-named LF file all get the same verdict."""
    twin = _classify(path)
    lf = classify(
        parse_message(path.read_bytes().replace(b"\r\n", b"\n"), max_bytes=25 * 1024 * 1024),
        CONTEXT,
    )
    assert (lf.verdict.value, lf.rule) == twin
    original = BOUNCES / "sisimai" / path.name
    if original.exists():
        assert _classify(original)[0] == twin[0]


def test_the_kinds_of_automated_mail_are_told_apart() -> None:
    verdicts = Counter(_classify(p)[0] for p in AUTOMATED)
    assert verdicts["bounce"] > 250
    assert verdicts["auto-reply"] >= 5  # rfc3834 vacation replies
    assert verdicts["feedback-report"] >= 10  # ARF complaints


def test_bounces_through_the_pipeline_never_open_a_case_or_answer(sqlite_app: App) -> None:
    for path in AUTOMATED:
        result = sqlite_app.pipeline.process(path.read_bytes(), SourceRef(label=path.name), NOW)
        assert result.outcome is not Outcome.QUARANTINED, (path.name, result.reason)
    with sqlite_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        rows = session.scalars(select(InboundMessage)).all()
        assert rows
        assert all(r.reason for r in rows)
        assert {r.disposition.value for r in rows} <= {"automated", "loop", "duplicate"}


def test_every_corpus_file_goes_through_the_pipeline_without_a_crash(sqlite_app: App) -> None:
    """Odd MIME becomes a row with what could be read (defects kept) or a quarantine entry."""
    files = corpus_files(CORPUS)
    assert len(files) > 500
    outcomes: Counter[Outcome] = Counter()
    for path in files:
        result = sqlite_app.pipeline.process(path.read_bytes(), SourceRef(label=path.name), NOW)
        outcomes[result.outcome] += 1
        assert result.reason or result.outcome is Outcome.PROCESSED
    with sqlite_app.sessions() as session:
        quarantined = session.scalars(select(QuarantineEntry)).all()
        assert all(q.reason and q.raw for q in quarantined)
        with_defects = session.scalars(
            select(InboundMessage).where(InboundMessage.defects != {})
        ).all()
    assert outcomes[Outcome.PROCESSED] > 450
    assert outcomes[Outcome.QUARANTINED] == 0, [q.reason for q in quarantined]
    assert with_defects  # the broken-boundary samples are recorded with their defects
