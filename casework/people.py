"""People the desk knows, found or created by email address."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from casework.db import planned_afresh
from casework.held_rows import hold_row, naming_tables
from casework.models import Person
from casework.read_ahead import CHUNK, accounted_for, read_ahead


def normalise_address(address: str) -> str:
    return address.strip().lower()


_BY_EMAIL = select(Person).where(Person.email == bindparam("email"))


def find_person(session: Session, email: str) -> Person | None:
    return session.scalars(_BY_EMAIL, {"email": normalise_address(email)}).first()


def ensure_person(session: Session, email: str, now: datetime, name: str = "") -> Person:
    """The person with this address, created on first sight and written at once; a known name
    is kept."""
    person = find_person(session, email)
    if person is None:
        person = Person(email=normalise_address(email), name=name.strip()[:200], created_at=now)
        session.add(person)
        session.flush()
    elif name and not person.name:
        person.name = name.strip()[:200]
    return person


_PEOPLE = cast(Table, Person.__table__)
_ID_AND_NAME = naming_tables(
    select(_PEOPLE.c.id, _PEOPLE.c.name).where(_PEOPLE.c.email == bindparam("email"))
)
_BY_EMAILS = naming_tables(
    select(_PEOPLE.c.email, _PEOPLE.c.id, _PEOPLE.c.name).where(
        _PEOPLE.c.email.in_(bindparam("emails", expanding=True))
    )
)
# note_person puts the row it writes in the read-ahead (or, in a savepoint, drops the entry).
_INSERT = accounted_for(naming_tables(insert(_PEOPLE)))
_NAME = accounted_for(
    naming_tables(
        update(_PEOPLE).where(_PEOPLE.c.id == bindparam("person")).values(name=bindparam("name"))
    )
)


def read_people_ahead(session: Session, emails: Iterable[str]) -> None:
    """Inside `reading_ahead`: look up these addresses now, in one statement per few hundred,
    so that `note_person` and `find_person_id` need none of their own."""
    ahead = read_ahead(session)
    if ahead is None:
        return
    wanted = sorted({normalise_address(e) for e in emails if e.strip()} - ahead.people.keys())
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        with planned_afresh(session):
            rows = session.execute(_BY_EMAILS, {"emails": chunk}).all()
        found = {row.email: (int(row.id), row.name) for row in rows}
        ahead.people.update((email, found.get(email)) for email in chunk)


def count_new_ahead(session: Session, emails: Iterable[str]) -> int:
    """Inside `reading_ahead`: how many of these addresses were read ahead and not found."""
    ahead = read_ahead(session)
    if ahead is None:
        return 0
    addresses = {normalise_address(e) for e in emails if e.strip()}
    return sum(1 for a in addresses if a in ahead.people and ahead.people[a] is None)


def _id_and_name(session: Session, address: str) -> tuple[int, str] | None:
    ahead = read_ahead(session)
    if ahead is not None and address in ahead.people:
        return ahead.people[address]
    found = session.execute(_ID_AND_NAME, {"email": address}).first()
    return None if found is None else (int(found[0]), found[1])


def _written(session: Session, address: str, row: tuple[int, str]) -> None:
    ahead = read_ahead(session)
    if ahead is None:
        return
    if session.in_nested_transaction():  # the write may yet be rolled back: look it up again
        ahead.people.pop(address, None)
    else:
        ahead.people[address] = row


def find_person_id(session: Session, email: str) -> int | None:
    """The id of the person with this address, if the desk knows them."""
    found = _id_and_name(session, normalise_address(email))
    return None if found is None else found[0]


@dataclass(frozen=True)
class NotedPerson:
    id: int
    email: str  # as stored: normalised
    new: bool


def note_person(session: Session, email: str, now: datetime, name: str = "") -> NotedPerson:
    """The person with this address, written if new; a known name is kept.

    Plain statements, for the intake's hot path: a Person row of this address already loaded
    in the same transaction would not see a name written here. Inside `holding_rows` with ids
    ahead, a new person is held and written with the group's other rows.
    """
    address = normalise_address(email)
    name = name.strip()[:200]
    found = _id_and_name(session, address)
    if found is None:
        values = {"email": address, "name": name, "created_at": now}
        person_id = hold_row(session, _INSERT, values)
        _written(session, address, (person_id, name))
        return NotedPerson(person_id, address, new=True)
    person_id, known = found
    if name and not known:
        session.execute(_NAME, {"person": person_id, "name": name})
        _written(session, address, (person_id, name))
    return NotedPerson(person_id, address, new=False)
