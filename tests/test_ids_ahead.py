"""A group's new people, cases and messages: held with ids drawn ahead, none missed or skipped."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import Table, func, insert, select

from casework.clock import FixedClock
from casework.db import transaction
from casework.held_rows import hold_row, holding_rows, naming_tables
from casework.ids_ahead import IdsAhead
from casework.models import (
    Case,
    CaseKind,
    CaseStatus,
    InboundMessage,
    Person,
    QuarantineEntry,
)
from casework.people import note_person
from intake.pipeline import Outcome, Result
from scheduler.app import App
from tests.conftest import MODERATORS, noting_statements
from tests.desk_helpers import body_of, open_report, outbox, reply_to_of
from tests.mail import make_mail
from tests.test_pipeline_groups import (
    pending,
    poison_after_writing,
    refusing_the_first_commit,
    report,
)

CASES = cast(Table, Case.__table__)
PEOPLE = cast(Table, Person.__table__)
QUARANTINE = cast(Table, QuarantineEntry.__table__)


@pytest.fixture
def pg_statements(pg_app: App) -> Iterator[list[str]]:
    """The first words of every statement `pg_app` sends while the test runs."""
    with noting_statements(pg_app.engine) as seen:
        yield seen


def group(app: App, clock: FixedClock, *raws: bytes, first_uid: int = 1) -> list[Result]:
    return list(app.pipeline.process_group(pending(app, *raws, first_uid=first_uid), clock.now))


def case_ids(app: App) -> list[int]:
    with app.sessions() as session:
        return list(session.scalars(select(Case.id).order_by(Case.id)))


def auto_reply(n: int) -> bytes:
    # No In-Reply-To: it looks like a new report until it is classified.
    return make_mail(
        sender=f"away{n}@example.com",
        subject="Out of office",
        body="I am away this week.",
        headers={"Auto-Submitted": "auto-replied"},
    )


@pytest.mark.postgres
def test_a_group_of_new_reports_writes_each_kind_of_row_in_one_statement(
    pg_app: App, clock: FixedClock, pg_statements: list[str]
) -> None:
    statements = pg_statements
    attachment = [("screenshot.png", "image/png", b"\x89PNG fake")]
    raws = [report(n, attachments=attachment if n % 2 else None) for n in range(25)]
    results = group(pg_app, clock, *raws)

    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 25
    for kind in ("people", "cases", "inbound_messages", "attachments"):
        assert statements.count(f"INSERT INTO {kind}") == 1, kind
    with pg_app.sessions() as session:
        cases = session.execute(
            select(Case.id, Person.email).join(Person, Case.reporter_id == Person.id)
        ).all()
        messages = session.execute(select(InboundMessage.id, InboundMessage.case_id)).all()
    reporters = dict(cases)
    assert [reporters[r.case_id] for r in results if r.case_id] == [
        f"student{n}@example.com" for n in range(25)
    ]
    assert dict(messages) == {r.inbound_id: r.case_id for r in results}
    ids = sorted(reporters)
    assert ids == list(range(ids[0], ids[0] + 25))  # case numbers in a row, none skipped


@pytest.mark.postgres
def test_case_numbers_skip_nothing_when_a_group_opens_fewer_cases_than_it_drew(
    pg_app: App, clock: FixedClock
) -> None:
    first = group(pg_app, clock, report(0), auto_reply(0), report(1), auto_reply(1), report(2))
    assert [r.outcome for r in first].count(Outcome.PROCESSED) == 5
    assert [r.case_id is not None for r in first] == [True, False, True, False, True]
    second = group(pg_app, clock, *(report(n) for n in range(3, 7)), first_uid=10)
    ids = case_ids(pg_app)
    assert ids == list(range(ids[0], ids[0] + 7))
    assert [r.case_id for r in second] == ids[3:]  # the ids left over came first


@pytest.mark.postgres
def test_the_ids_of_a_group_that_failed_are_used_later_and_none_twice(
    pg_app: App, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison_after_writing(monkeypatch, RuntimeError("casework blew up"))
    poison = make_mail(sender="poison@example.com", subject="POISON")
    failed = group(pg_app, clock, report(0), report(1), poison, report(2))
    assert [r.outcome for r in failed] == [Outcome.PROCESSED] * 2 + [
        Outcome.QUARANTINED,
        Outcome.PROCESSED,
    ]
    later = group(pg_app, clock, *(report(n) for n in range(3, 7)), first_uid=10)
    assert [r.outcome for r in later] == [Outcome.PROCESSED] * 4
    ids = case_ids(pg_app)
    # Handled one by one after the group failed, the three reports took the sequence's next
    # ids, and so did the poison, in a transaction rolled back as on any desk: one id skipped.
    # The next group took the ids the failed group had drawn. None twice.
    assert len(ids) == 7 and ids[-1] - ids[0] == 7
    assert sorted(r.case_id or 0 for r in later) == ids[:4]


@pytest.mark.postgres
def test_the_ids_of_a_refused_commit_are_never_used(pg_app: App, clock: FixedClock) -> None:
    # A commit that failed may have been applied, for all the worker can tell: the ids its
    # rows took are not given back, so no later row can collide with them.
    with refusing_the_first_commit(pg_app) as refused:
        first = group(pg_app, clock, report(0), report(1), report(2))
    later = group(pg_app, clock, report(3), report(4), first_uid=10)
    assert refused == [1]
    assert [r.outcome for r in [*first, *later]] == [Outcome.PROCESSED] * 5
    # A new desk's sequences start at 1: the refused group drew 1-3, its reports were then
    # handled one by one (4-6), and the next group drew afresh.
    assert case_ids(pg_app) == [4, 5, 6, 7, 8]


@pytest.mark.postgres
def test_an_id_the_database_refused_is_not_drawn_again(
    pg_app: App, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Two ids left over (the auto-replies'), and the first of them taken meanwhile by a row
    # written with an explicit id, as by a restore: the next group meets it and fails.
    group(pg_app, clock, report(0), auto_reply(0), auto_reply(1))
    [opened] = case_ids(pg_app)
    with transaction(pg_app.sessions) as session:
        session.execute(
            insert(CASES),
            {
                "id": opened + 1,
                "kind": CaseKind.REPORT,
                "status": CaseStatus.OPEN,
                "reporter_id": None,
                "title": "restored",
                "created_at": clock.now(),
                "updated_at": clock.now(),
            },
        )
    with caplog.at_level(logging.INFO, logger="intake.pipeline"):
        refused = group(pg_app, clock, report(1), report(2), first_uid=10)
        assert caplog.text.count("handling each on its own") == 1
        later = group(pg_app, clock, report(3), report(4), first_uid=20)
    assert caplog.text.count("handling each on its own") == 1  # the ids were not given back
    assert [r.outcome for r in [*refused, *later]] == [Outcome.PROCESSED] * 4
    assert len(set(case_ids(pg_app))) == 6


def test_the_same_new_sender_twice_in_a_group_is_one_person_with_two_cases(
    app: App, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    twice = [report(0, message_id=f"<twice-{n}@client.example>") for n in range(2)]
    with caplog.at_level(logging.INFO, logger="intake.pipeline"):
        results = group(app, clock, report(1), *twice, report(2))
    assert "handling each on its own" not in caplog.text
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 4
    with app.sessions() as session:
        [person] = session.scalars(select(Person).where(Person.email == "student0@example.com"))
        reported = session.scalars(select(Case.id).where(Case.reporter_id == person.id)).all()
    assert sorted(reported) == sorted([results[1].case_id or 0, results[2].case_id or 0])
    # The second report's moderators are told of the first, held in the same group.
    told = [m for m in outbox(app, template="moderator/new-case") if m.case_id in reported]
    each = len(MODERATORS)
    assert ["1 earlier case(s) as reporter" in body_of(m) for m in told] == [False] * each + [
        True
    ] * each


def test_a_message_id_twice_in_a_group_is_one_case_and_a_duplicate(
    app: App, clock: FixedClock
) -> None:
    same = report(0, message_id="<same@client.example>")
    results = group(app, clock, same, report(1), same)
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 2 + [Outcome.DUPLICATE]
    assert results[2].case_id == results[0].case_id
    assert len(case_ids(app)) == 2


def test_a_reply_before_a_new_report_in_a_group_is_written_in_order(
    app: App, clock: FixedClock
) -> None:
    case_id = open_report(app, clock.now())
    [ack] = outbox(app, template="reporter/acknowledgement")
    reply = make_mail(
        sender="priya.student@example.com",
        subject="Re: your report",
        body="He wrote again today.",
        in_reply_to=ack.message_id,
        to=reply_to_of(ack),
    )
    results = group(app, clock, reply, report(0), report(1), first_uid=50)
    assert results[0].case_id == case_id
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 3
    assert len(set(case_ids(app))) == 3


@pytest.mark.postgres
def test_an_orm_row_may_refer_to_a_held_one(pg_app: App, clock: FixedClock) -> None:
    ids = IdsAhead()
    now = clock.now()
    with ids.lent(), transaction(pg_app.sessions) as session, holding_rows(session, ids):
        ids.top_up(session, {PEOPLE: 1})
        person = note_person(session, "held@example.com", now)
        session.add(
            Case(
                kind=CaseKind.REPORT,
                status=CaseStatus.OPEN,
                reporter_id=person.id,
                title="ORM row",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()  # the held person goes first
    with pg_app.sessions() as session:
        assert session.scalar(select(Case.reporter_id)) == person.id


@pytest.mark.postgres
def test_a_statement_writes_first_only_the_held_rows_it_reads_and_those_they_need(
    pg_app: App, clock: FixedClock, pg_statements: list[str]
) -> None:
    statements = pg_statements
    ids = IdsAhead()
    now = clock.now()
    count_people = naming_tables(select(func.count()).select_from(PEOPLE))
    count_quarantine = naming_tables(select(func.count()).select_from(QUARANTINE))
    with ids.lent(), transaction(pg_app.sessions) as session, holding_rows(session, ids):
        ids.top_up(session, {PEOPLE: 1, CASES: 1})
        person = note_person(session, "held@example.com", now).id
        case = hold_row(
            session,
            insert(CASES),
            {
                "kind": CaseKind.REPORT,
                "status": CaseStatus.OPEN,
                "reporter_id": person,
                "title": "held",
                "created_at": now,
                "updated_at": now,
            },
        )
        statements.clear()
        assert session.scalar(count_quarantine) == 0
        assert statements == ["SELECT count(*) AS"]  # the people and the case stay held
        assert session.scalar(count_people) == 1
        assert statements[1:] == ["INSERT INTO people", "SELECT count(*) AS"]
        # An unmarked statement writes everything held, each table after those it refers to.
        assert session.scalar(select(Case.reporter_id).where(Case.id == case)) == person


def test_nothing_is_drawn_ahead_on_sqlite(sqlite_app: App) -> None:
    ids = IdsAhead()
    with ids.lent(), transaction(sqlite_app.sessions) as session:
        ids.top_up(session, {CASES: 5, PEOPLE: 5})
    assert ids.on_hand(CASES) == ids.on_hand(PEOPLE) == 0


def test_ids_are_lent_to_one_transaction_at_a_time() -> None:
    ids = IdsAhead()
    with ids.lent(), pytest.raises(RuntimeError, match="already lent"), ids.lent():
        pass
    with ids.lent():  # free again
        pass


def test_a_person_held_in_a_group_is_found_by_the_next_message(
    app: App, clock: FixedClock, statements: list[str]
) -> None:
    # The sender's second message needs no lookup of its own: the held row answers.
    results = group(app, clock, report(0), report(0, message_id="<again@client.example>"))
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 2
    assert not [s for s in statements if s.startswith("SELECT people.id, people.name")]
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 1
