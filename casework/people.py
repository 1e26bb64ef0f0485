"""People the desk knows, found or created by email address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from casework.db import insert_row
from casework.held_rows import blind_to_held_rows
from casework.models import Person


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
_ID_AND_NAME = blind_to_held_rows(
    select(_PEOPLE.c.id, _PEOPLE.c.name).where(_PEOPLE.c.email == bindparam("email"))
)
_INSERT = blind_to_held_rows(insert(_PEOPLE))
_NAME = blind_to_held_rows(
    update(_PEOPLE).where(_PEOPLE.c.id == bindparam("person")).values(name=bindparam("name"))
)


def find_person_id(session: Session, email: str) -> int | None:
    """The id of the person with this address, if the desk knows them."""
    found = session.execute(_ID_AND_NAME, {"email": normalise_address(email)}).first()
    return None if found is None else int(found[0])


@dataclass(frozen=True)
class NotedPerson:
    id: int
    email: str  # as stored: normalised
    new: bool


def note_person(session: Session, email: str, now: datetime, name: str = "") -> NotedPerson:
    """The person with this address, written at once if new; a known name is kept.

    Plain statements, for the intake's hot path: a Person row of this address already loaded
    in the same transaction would not see a name written here.
    """
    address = normalise_address(email)
    name = name.strip()[:200]
    found = session.execute(_ID_AND_NAME, {"email": address}).first()
    if found is None:
        values = {"email": address, "name": name, "created_at": now}
        return NotedPerson(insert_row(session, _INSERT, values), address, new=True)
    person_id, known = found
    if name and not known:
        session.execute(_NAME, {"person": person_id, "name": name})
    return NotedPerson(int(person_id), address, new=False)
