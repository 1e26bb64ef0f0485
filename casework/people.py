"""People the desk knows, found or created by email address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from casework.models import Person


def normalise_address(address: str) -> str:
    return address.strip().lower()


_BY_EMAIL = select(Person).where(Person.email == bindparam("email"))


def find_person(session: Session, email: str) -> Person | None:
    return session.scalars(_BY_EMAIL, {"email": normalise_address(email)}).first()


def find_or_add_person(session: Session, email: str, now: datetime, name: str = "") -> Person:
    """The person with this address; a new one is written at the session's next flush."""
    person = find_person(session, email)
    if person is None:
        person = Person(email=normalise_address(email), name=name.strip()[:200], created_at=now)
        session.add(person)
    elif name and not person.name:
        person.name = name.strip()[:200]
    return person


def ensure_person(session: Session, email: str, now: datetime, name: str = "") -> Person:
    """The person with this address, created on first sight and written at once; a known name
    is kept."""
    person = find_or_add_person(session, email, now, name)
    if person.id is None:
        session.flush()
    return person
