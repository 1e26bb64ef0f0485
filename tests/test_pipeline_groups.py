"""Several messages under one commit: each kept whole or not at all, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import casework.cases
from casework.cases import TextReading
from casework.clock import FixedClock
from casework.models import Case, Disposition, InboundMessage, OutboxMessage, Person
from casework.models import QuarantineEntry as Quarantined
from intake.classify import Classification, Verdict
from intake.insights import gather_insights
from intake.parse import ParsedMessage, parse_message
from intake.pipeline import Outcome, Pending, Result, SourceRef, TemporaryFailure
from scheduler.app import App
from tests.conftest import MODERATORS
from tests.desk_helpers import AppPipeline
from tests.mail import make_mail
from tests.test_hygiene_malformed import nested

NOTICES_PER_CASE = 1 + len(MODERATORS)  # the reporter's acknowledgement, each moderator's email


def pending(app: App, *raws: bytes, parsed: bool = True, first_uid: int = 1) -> list[Pending]:
    """The messages as the IMAP intake hands them over: parsed ahead, or (`parsed=False`) not."""
    limits = app.pipeline.limits
    return [
        Pending(
            raw,
            SourceRef(label=f"m{n}", mailbox="test", uidvalidity=1, uid=first_uid + n),
            parse_message(
                raw,
                max_bytes=limits.max_message_bytes,
                max_attachment_bytes=limits.max_attachment_bytes,
            )
            if parsed
            else None,
        )
        for n, raw in enumerate(raws)
    ]


def report(n: int, **fields: Any) -> bytes:
    fields.setdefault("sender", f"student{n}@example.com")
    fields.setdefault("message_id", f"<group-{n}@client.example>")
    return make_mail(subject=f"Report {n}: mentor asked for money", **fields)


def rows(app: App, model: Any) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def commits(app: App) -> Iterator[list[str]]:
    """One entry per commit on the app's engine while the test runs."""
    seen: list[str] = []

    def count(_connection: Any) -> None:
        seen.append("commit")

    event.listen(app.engine, "commit", count)
    yield seen
    event.remove(app.engine, "commit", count)


def process(app: App, items: list[Pending], clock: FixedClock) -> list[Result]:
    return list(app.pipeline.process_group(items, clock.now))


def test_a_group_is_one_commit_with_the_rows_of_one_message_at_a_time(
    app: App, clock: FixedClock, commits: list[str]
) -> None:
    raws = [
        report(0),
        report(1),
        report(2, sender="student0@example.com"),  # the first reporter again
        report(3, message_id="<group-0@client.example>"),  # the first message again
        report(4),
    ]
    results = process(app, pending(app, *raws), clock)

    assert commits == ["commit"]
    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.PROCESSED,
    ]
    assert results[3].case_id == results[0].case_id
    with app.sessions() as session:
        cases = session.scalars(select(Case).order_by(Case.id)).all()
        people = session.scalars(select(Person.email).order_by(Person.id)).all()
        inbound = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    assert [c.id for c in cases] == [results[n].case_id for n in (0, 1, 2, 4)]
    assert cases[0].reporter_id == cases[2].reporter_id
    assert people == [f"student{n}@example.com" for n in (0, 1, 4)]
    assert [row.disposition for row in inbound] == [
        Disposition.NEW_CASE,
        Disposition.NEW_CASE,
        Disposition.NEW_CASE,
        Disposition.DUPLICATE,
        Disposition.NEW_CASE,
    ]
    assert [row.uid for row in inbound] == [1, 2, 3, 4, 5]
    assert rows(app, OutboxMessage) == 4 * NOTICES_PER_CASE
    assert rows(app, Quarantined) == 0


class WatchingPipeline(AppPipeline):
    """The real pipeline, noting how many ORM rows each message finds loaded when it starts."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.loaded: list[int] = []

    def before_handling(self, session: Session, parsed: ParsedMessage) -> None:
        self.loaded.append(len(session.identity_map))


def test_each_message_of_a_group_starts_from_the_database(
    app: App, clock: FixedClock, commits: list[str]
) -> None:
    """No ORM row loaded for one message is handed to the next: plain statements of a later
    message could change it behind the ORM's back, as they could not in separate sessions."""
    # The session forgets rows nothing holds; hold every row, as a reference cycle or a cache
    # could, or the count below would prove nothing.
    held: list[object] = []

    def hold(_session: Session, row: object) -> None:
        held.append(row)

    watching = WatchingPipeline(app)
    raws = [
        report(0),
        report(1, message_id="<group-0@client.example>"),  # a duplicate: loads the first record
        make_mail(sender="mailer-daemon@example.net", subject="Undelivered Mail Returned"),
        report(2),
    ]
    event.listen(app.sessions, "loaded_as_persistent", hold)
    event.listen(app.sessions, "pending_to_persistent", hold)
    try:
        results = list(watching.process_group(pending(app, *raws), clock.now))
    finally:
        event.remove(app.sessions, "loaded_as_persistent", hold)
        event.remove(app.sessions, "pending_to_persistent", hold)

    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    assert results[2].disposition is Disposition.AUTOMATED  # the bounce's row is an ORM row
    assert commits == ["commit"]
    assert len(held) >= 2  # the first record, loaded for the duplicate, and the bounce's row
    assert watching.loaded == [0, 0, 0, 0]


def poison_after_writing(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Casework fails on a message whose subject says POISON, after writing its rows."""
    real = casework.cases.open_case

    def open_case(desk: Any, session: Any, message: Any, now: Any, **kw: Any) -> Any:
        opened = real(desk, session, message, now, **kw)
        if "POISON" in message.subject:
            session.flush()
            raise error
        return opened

    monkeypatch.setattr("intake.pipeline.open_case", open_case)


def test_a_failing_message_is_quarantined_alone_and_the_rest_kept(
    app: App, clock: FixedClock, commits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    poison_after_writing(monkeypatch, RuntimeError("casework blew up"))
    poison = make_mail(sender="poison@example.com", subject="POISON", message_id="<p@x.example>")
    raws = [report(0), poison, report(1), report(2)]
    results = process(app, pending(app, *raws), clock)

    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    # The group's transaction was rolled back; then three commits of one message each, and one
    # of the quarantine entry.
    assert len(commits) == 4
    with app.sessions() as session:
        entry = session.scalars(select(Quarantined)).one()
        people = session.scalars(select(Person.email).order_by(Person.id)).all()
        cases = session.scalars(select(Case)).all()
    assert entry.raw == poison and "casework blew up" in entry.reason
    assert people == [f"student{n}@example.com" for n in range(3)]  # nothing of the poison
    assert sorted(c.id for c in cases) == sorted(
        r.case_id for r in results if r.case_id is not None
    )
    assert rows(app, InboundMessage) == 3
    assert rows(app, OutboxMessage) == 3 * NOTICES_PER_CASE


@contextmanager
def refusing_the_first_commit(app: App) -> Iterator[list[int]]:
    """Within the block, the app's first commit is refused; the list notes that it was."""
    refused: list[int] = []

    def refuse_the_first(_session: Any) -> None:
        if not refused:
            refused.append(1)
            raise RuntimeError("commit refused")

    event.listen(app.sessions, "before_commit", refuse_the_first)
    try:
        yield refused
    finally:
        event.remove(app.sessions, "before_commit", refuse_the_first)


def test_a_refused_commit_runs_each_message_again_on_its_own(
    app: App, clock: FixedClock, commits: list[str]
) -> None:
    with refusing_the_first_commit(app) as refused:
        results = process(app, pending(app, report(0), report(1), report(2)), clock)

    assert refused == [1]
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 3
    assert len(commits) == 3
    assert rows(app, InboundMessage) == rows(app, Case) == 3
    assert rows(app, OutboxMessage) == 3 * NOTICES_PER_CASE
    assert rows(app, Quarantined) == 0


def test_a_database_outage_in_a_group_keeps_nothing_and_asks_for_a_retry(
    app: App, clock: FixedClock, commits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = OperationalError("INSERT INTO cases", {}, ConnectionRefusedError("connection refused"))
    poison_after_writing(monkeypatch, lost)
    down = make_mail(subject="POISON", message_id="<down@x.example>")
    with pytest.raises(TemporaryFailure, match="database unavailable"):
        process(app, pending(app, report(0), down, report(1)), clock)

    assert commits == []
    assert rows(app, InboundMessage) == rows(app, Person) == rows(app, Quarantined) == 0


def test_messages_parsed_in_the_pipeline_keep_their_place(
    app: App, clock: FixedClock, commits: list[str]
) -> None:
    refused = nested(500)  # over the MIME depth limit: refused by the bounded parser
    items = [
        *pending(app, report(0)),
        *pending(app, report(1), refused, parsed=False, first_uid=2),
        *pending(app, report(2), first_uid=4),
    ]
    results = process(app, items, clock)

    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
    ]
    assert len(commits) == 2  # the quarantine entry, then the group of three
    with app.sessions() as session:
        entry = session.scalars(select(Quarantined)).one()
    assert entry.raw == refused and entry.reason.startswith("refused")
    assert rows(app, Case) == 3


def test_what_a_parse_helper_read_is_what_the_pipeline_uses(app: App, clock: FixedClock) -> None:
    """The helper's insights are taken as given, not read again on the database path."""
    items = pending(app, report(0), report(1), report(2))
    context = app.pipeline.classify_context
    read = [gather_insights(item.parsed, context) for item in items if item.parsed is not None]
    automated = Classification(Verdict.AUTO_REPLY, "test-rule")
    reading = TextReading(question=False, suggested_rule="test-category", mentioned=())
    items = [
        replace(items[0], insights=replace(read[0], classification=automated)),
        replace(items[1], insights=replace(read[1], text=reading)),
        items[2],  # none given: read in the pipeline
    ]
    results = process(app, items, clock)

    assert results[0].disposition is Disposition.AUTOMATED and results[0].case_id is None
    assert [r.disposition for r in results[1:]] == [Disposition.NEW_CASE] * 2
    with app.sessions() as session:
        given = session.get(Case, results[1].case_id)
        read_here = session.get(Case, results[2].case_id)
    assert given is not None and given.suggested_category == "test-category"
    assert read_here is not None and read_here.suggested_category == read[2].text.suggested_rule


@pytest.mark.parametrize("parsed", [True, False], ids=["parsed-ahead", "parsed-here"])
def test_a_group_no_helper_read_reads_each_message_once(
    app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, parsed: bool
) -> None:
    """Without a helper's reading, what each message says (the addresses named in its text) is
    read once, for the group's lookups and its handling alike."""
    calls: list[str] = []
    real = casework.cases.mentioned_addresses

    def mentioned(text: str, sender: str, desk_address: str) -> list[str]:
        calls.append(sender)
        return real(text, sender, desk_address)

    monkeypatch.setattr(casework.cases, "mentioned_addresses", mentioned)
    # And under the name the pipeline once imported it by, should it import it again.
    monkeypatch.setattr("intake.pipeline.mentioned_addresses", mentioned, raising=False)
    items = pending(app, *(report(n) for n in range(4)), parsed=parsed)
    results = list(app.pipeline.process_group(items, clock.now))

    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 4
    assert sorted(calls) == [f"student{n}@example.com" for n in range(4)]
    assert rows(app, Case) == 4
