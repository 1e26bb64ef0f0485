"""Read-ahead: a group's lookups made at once, giving what each lookup alone would, never stale."""

from __future__ import annotations

import hashlib
import logging

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from casework.audit import record_event
from casework.clock import FixedClock
from casework.db import transaction
from casework.models import AuditEvent, Case, Disposition, InboundMessage, OutboxMessage, Person
from casework.people import find_person_id, note_person, read_people_ahead
from casework.read_ahead import reading_ahead
from intake.pipeline import Outcome, SourceRef
from intake.seen import find_seen, read_seen_ahead
from scheduler.app import App
from tests.mail import make_mail
from tests.test_pipeline_groups import pending


def without_message_id(raw: bytes) -> bytes:
    return b"".join(
        line for line in raw.splitlines(keepends=True) if not line.startswith(b"Message-ID:")
    )


def add_person(app: App, clock: FixedClock, email: str, name: str = "") -> int:
    with transaction(app.sessions) as session:
        person = Person(email=email, name=name, created_at=clock.now())
        session.add(person)
        session.flush()
        return person.id


def test_a_group_of_reports_looks_up_people_and_earlier_mail_once(
    app: App, clock: FixedClock, statements: list[str]
) -> None:
    known = add_person(app, clock, "student0@example.com", "Asha")
    named = add_person(app, clock, "karan.mentor@example.com")
    raws = [
        make_mail(
            sender=f"student{n}@example.com",
            subject=f"Report {n}: mentor asked for money",
            body="My mentor karan.mentor@example.com asked me to pay him on WhatsApp.",
        )
        for n in range(5)
    ]
    statements.clear()
    results = list(app.pipeline.process_group(pending(app, *raws), clock.now))

    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 5
    # Two reads for the whole group; without them, each report makes three of its own.
    assert statements.count("SELECT people.email, people.id,") == 1
    assert statements.count("SELECT inbound_messages.id, 0") == 1
    assert statements.count("SELECT people.id, people.name") == 0
    assert statements.count("SELECT anon_1.id FROM") == 0
    assert statements.count("INSERT INTO people") == 4  # the four new reporters
    with app.sessions() as session:
        reporters = list(session.scalars(select(Case.reporter_id).order_by(Case.id)))
        people = dict(session.execute(select(Person.email, Person.id)).all())
        alerts = session.scalars(
            select(OutboxMessage.case_id).where(OutboxMessage.template == "moderator/new-case")
        ).all()
    assert reporters == [known] + [people[f"student{n}@example.com"] for n in range(1, 5)]
    assert people["karan.mentor@example.com"] == named and len(people) == 6
    assert len(alerts) == 5 * len(app.settings.moderators.addresses)


def test_a_message_repeated_within_the_group_is_a_duplicate_of_the_first(
    app: App, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = make_mail(sender="a@example.com", message_id="<again@client.example>")
    bare = without_message_id(make_mail(sender="b@example.com", subject="No id"))
    raws = [first, bare, make_mail(sender="c@example.com"), first + b"\r\n", bare]
    results = list(app.pipeline.process_group(pending(app, *raws), clock.now))

    assert [r.outcome for r in results] == [
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
    ]
    assert results[3].case_id == results[0].case_id
    assert results[4].case_id == results[1].case_id
    assert "handling each on its own" not in caplog.text  # one commit for the group
    with app.sessions() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc())) == results[2].case_id
        dispositions = list(
            session.scalars(select(InboundMessage.disposition).order_by(InboundMessage.id))
        )
    assert dispositions.count(Disposition.DUPLICATE) == 2


def test_mail_recorded_before_the_group_is_found_as_one_lookup_would(
    app: App, clock: FixedClock
) -> None:
    raw = make_mail(message_id="<before@client.example>")
    first, _ = app.pipeline.process_group(pending(app, raw, make_mail()), clock.now)
    later = pending(app, raw + b"\r\n", make_mail(), first_uid=10)
    results = list(app.pipeline.process_group(later, clock.now))
    assert [r.outcome for r in results] == [Outcome.DUPLICATE, Outcome.PROCESSED]
    assert results[0].case_id == first.case_id


def test_read_ahead_finds_what_each_lookup_finds_alone(app: App, clock: FixedClock) -> None:
    def at(uid: int | None, mailbox: str = "INBOX") -> SourceRef:
        return SourceRef(mailbox=mailbox, uidvalidity=7, uid=uid)

    raw = make_mail(message_id="<once@client.example>")
    app.pipeline.process(raw, at(5), clock.now())
    app.pipeline.process(raw + b"\r\n", at(6), clock.now())  # a duplicate record
    bare = without_message_id(make_mail(subject="No id here"))
    app.pipeline.process(bare, at(8), clock.now())
    app.pipeline.process(make_mail(), at(3, mailbox="Other"), clock.now())
    once, bare_digest = "<once@client.example>", hashlib.sha256(bare).hexdigest()
    lookups = [
        (once, "x", at(6)),  # its own record, though a duplicate
        (once, "x", at(9)),  # the first record of that Message-ID
        (None, bare_digest, SourceRef()),  # no mailbox UID: the bytes decide
        (None, "0" * 64, at(5)),  # the mailbox UID alone
        ("<never@client.example>", "x", at(10)),  # nothing
        ("<never@client.example>", "y", at(3, mailbox="Other")),  # another mailbox's UID
    ]
    with app.sessions() as session:
        alone = [find_seen(session, *lookup) for lookup in lookups]
    read = []
    for lookup in lookups:
        with app.sessions() as session, reading_ahead(session) as ahead:
            read_seen_ahead(session, [lookup])
            assert len(ahead.seen) == 1
            row = find_seen(session, *lookup)
            read.append(row.id if row else None)
    assert [row.uid if row else None for row in alone] == [6, 5, 8, 5, None, 3]
    assert read == [row.id if row else None for row in alone]
    # In a group, the UID branch asks about the first message's mailbox: the others are left
    # to their own lookups.
    with app.sessions() as session, reading_ahead(session) as ahead:
        read_seen_ahead(session, [(None, "a", at(9)), (None, "b", at(3, mailbox="Other"))])
        assert list(ahead.seen.values()) == [None]
        other = find_seen(session, None, "b", at(3, mailbox="Other"))
        assert other is not None and alone[5] is not None and other.id == alone[5].id


def test_a_repeat_of_an_earlier_lookup_in_the_group_is_left_to_its_own(app: App) -> None:
    source = SourceRef(mailbox="INBOX", uidvalidity=1, uid=1)
    lookups = [
        ("<a@x>", "1", source),
        ("<b@x>", "2", SourceRef(mailbox="INBOX", uidvalidity=1, uid=2)),
        ("<a@x>", "3", SourceRef(mailbox="INBOX", uidvalidity=1, uid=3)),  # same Message-ID
        (None, "2", SourceRef(mailbox="INBOX", uidvalidity=1, uid=4)),  # same bytes
        ("<c@x>", "5", source),  # same mailbox UID
    ]
    with app.sessions() as session, reading_ahead(session) as ahead:
        read_seen_ahead(session, lookups)
        read = dict(ahead.seen)
    # Only the first two were read (and found nothing); the rest are looked up on their own.
    assert read == {("<a@x>", "1", "INBOX", 1, 1): None, ("<b@x>", "2", "INBOX", 1, 2): None}


def test_a_sender_new_to_the_group_writes_one_person_and_keeps_the_first_name(
    app: App, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    nameless = add_person(app, clock, "known@example.com")
    raws = [
        make_mail(sender="fresh@example.com", name="Meera Iyer"),
        make_mail(sender="known@example.com", name="Ravi Kumar"),
        make_mail(sender="fresh@example.com", name="Someone Else", subject="Again"),
        make_mail(sender="known@example.com", name="Not Ravi", subject="Again"),
    ]
    results = list(app.pipeline.process_group(pending(app, *raws), clock.now))
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 4
    assert "handling each on its own" not in caplog.text
    with app.sessions() as session:
        people = dict(session.execute(select(Person.email, Person.name)).all())
        reporters = list(session.scalars(select(Case.reporter_id).order_by(Case.id)))
        fresh = session.scalar(select(Person.id).where(Person.email == "fresh@example.com"))
    assert people == {"known@example.com": "Ravi Kumar", "fresh@example.com": "Meera Iyer"}
    assert reporters == [fresh, nameless, fresh, nameless]


def test_people_read_ahead_match_the_lookups_and_know_what_they_wrote(
    app: App, clock: FixedClock
) -> None:
    known = add_person(app, clock, "known@example.com", "Asha")
    with transaction(app.sessions) as session, reading_ahead(session) as ahead:
        read_people_ahead(session, [" Known@Example.com ", "new@example.com", ""])
        assert ahead.people == {"known@example.com": (known, "Asha"), "new@example.com": None}
        assert find_person_id(session, "KNOWN@example.com") == known
        assert find_person_id(session, "new@example.com") is None
        noted = note_person(session, "new@example.com", clock.now())
        assert ahead.people["new@example.com"] == (noted.id, "")  # as written: no lookup
        assert find_person_id(session, "new@example.com") == noted.id
        named = note_person(session, "new@example.com", clock.now(), "Ravi")
        assert named.id == noted.id and ahead.people["new@example.com"] == (noted.id, "Ravi")
        assert ahead.people["known@example.com"] == (known, "Asha")


def test_a_person_written_in_a_rolled_back_savepoint_is_not_remembered(
    app: App, clock: FixedClock
) -> None:
    with transaction(app.sessions) as session, reading_ahead(session):
        read_people_ahead(session, ["new@example.com"])
        with pytest.raises(RuntimeError), session.begin_nested():
            note_person(session, "new@example.com", clock.now())
            raise RuntimeError("the block was refused")
        again = note_person(session, "new@example.com", clock.now())
        assert again.new
    with app.sessions() as session:
        assert session.scalar(select(Person.id)) == again.id


def test_any_other_write_to_what_was_read_forgets_it(app: App, clock: FixedClock) -> None:
    known = add_person(app, clock, "known@example.com", "Asha")

    def read(session: Session) -> None:
        read_people_ahead(session, ["known@example.com"])
        read_seen_ahead(session, [("<m@x>", "1", SourceRef())])

    with transaction(app.sessions) as session, reading_ahead(session) as ahead:
        read(session)
        # Reads, and writes to tables nothing is read from, keep what was read.
        session.scalar(select(Person.name).where(Person.id == known))
        record_event(session, clock.now(), "test.kept")
        session.add(AuditEvent(at=clock.now(), kind="test.orm", actor="", detail={}))
        session.flush()
        assert len(ahead.people) == 1 and len(ahead.seen) == 1

        session.execute(update(Person).where(Person.id == known).values(name="Changed"))
        assert ahead.people == {} and ahead.seen == {}
        assert note_person(session, "known@example.com", clock.now()).id == known

        read(session)
        session.add(Person(email="orm@example.com", name="", created_at=clock.now()))
        session.flush()
        assert ahead.people == {} and ahead.seen == {}

        read(session)
        session.execute(
            insert(Person).values(email="x@example.com", name="", created_at=clock.now())
        )
        assert ahead.people == {}


def test_a_session_that_does_not_watch_its_writes_cannot_read_ahead(app: App) -> None:
    with sessionmaker(app.engine)() as session, pytest.raises(RuntimeError), reading_ahead(session):
        pass


def test_uids_far_apart_in_one_group_find_each_and_nothing_between(
    app: App, clock: FixedClock
) -> None:
    first = list(
        app.pipeline.process_group(pending(app, *(make_mail() for _ in range(3))), clock.now)
    )

    def at(uid: int) -> SourceRef:
        return SourceRef(mailbox="test", uidvalidity=1, uid=uid)

    lookups = [("<a@client.example>", "x", at(1)), ("<b@client.example>", "y", at(50)),
               ("<c@client.example>", "z", at(3))]  # fmt: skip
    with app.sessions() as session, reading_ahead(session):
        read_seen_ahead(session, lookups)
        found = [find_seen(session, *lookup) for lookup in lookups]
    assert [row.id if row else None for row in found] == [
        first[0].inbound_id,
        None,  # uid 2, between the others, is in the database but was not asked about
        first[2].inbound_id,
    ]
