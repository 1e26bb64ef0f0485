"""Program rosters: who mentors and supports which program, imported from the operators' CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.models import Program, ProgramMember, ProgramRole
from casework.people import ensure_person, normalise_address

HEADER = ("program", "title", "email", "name", "role")
_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RosterError(ValueError):
    """A roster file that cannot be imported; the message names the line."""


@dataclass(frozen=True)
class RosterRow:
    line: int
    program: str
    title: str
    email: str
    name: str
    role: ProgramRole


@dataclass(frozen=True)
class ImportSummary:
    programs: int
    added: int
    changed: int
    removed: int

    def __str__(self) -> str:
        return (
            f"{self.programs} program(s): {self.added} member(s) added, {self.changed} changed, "
            f"{self.removed} removed"
        )


def read_roster(text: str) -> list[RosterRow]:
    """Parse and check every row first; any bad row refuses the whole file."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows: list[RosterRow] = []
    seen: dict[tuple[str, str], int] = {}
    header_seen = False
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if not header_seen:
            if tuple(f.strip().lower() for f in fields) != HEADER:
                raise RosterError(f"line {line}: the header must be {','.join(HEADER)}")
            header_seen = True
            continue
        if len(fields) != len(HEADER):
            raise RosterError(f"line {line}: expected {len(HEADER)} fields, got {len(fields)}")
        program, title, email, name, role = (f.strip() for f in fields)
        if not _CODE.match(program):
            raise RosterError(f"line {line}: {program!r} is not a program code")
        if not _ADDRESS.match(email):
            raise RosterError(f"line {line}: {email!r} is not an email address")
        if role.lower() not in {r.value for r in ProgramRole}:
            raise RosterError(f"line {line}: role {role!r} must be mentor or support")
        key = (program, normalise_address(email))
        if key in seen:
            raise RosterError(
                f"line {line}: {email} is listed twice for {program} (line {seen[key]})"
            )
        seen[key] = line
        rows.append(RosterRow(line, program, title, email, name, ProgramRole(role.lower())))
    if not header_seen:
        raise RosterError("line 1: the file is empty; expected the header " + ",".join(HEADER))
    return rows


def import_roster(
    session: Session, rows: Iterable[RosterRow], now: datetime, actor: str = "operator"
) -> ImportSummary:
    """Make each listed program's roster exactly the rows given; other programs are untouched."""
    by_program: dict[str, list[RosterRow]] = {}
    for row in rows:
        by_program.setdefault(row.program, []).append(row)
    added = changed = removed = 0
    for code, members in by_program.items():
        program = session.scalars(select(Program).where(Program.code == code)).first()
        if program is None:
            program = Program(code=code, title="")
            session.add(program)
            session.flush()
        title = next((m.title for m in members if m.title), "")
        if title and program.title != title:
            program.title = title
        current = {m.person_id: m for m in program.members}
        keep: set[int] = set()
        for row in members:
            person = ensure_person(session, row.email, now, row.name)
            keep.add(person.id)
            existing = current.get(person.id)
            if existing is None:
                session.add(
                    ProgramMember(program_id=program.id, person_id=person.id, role=row.role)
                )
                record_event(
                    session, now, "program.member-added", actor=actor, person_id=person.id,
                    program=code, role=row.role.value,
                )  # fmt: skip
                added += 1
            elif existing.role is not row.role:
                existing.role = row.role
                changed += 1
        for person_id, member in current.items():
            if person_id not in keep:
                session.delete(member)
                record_event(
                    session, now, "program.member-removed", actor=actor, person_id=person_id,
                    program=code,
                )  # fmt: skip
                removed += 1
        session.flush()
        session.expire(program, ["members"])
    return ImportSummary(len(by_program), added, changed, removed)
