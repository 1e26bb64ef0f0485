"""Rows a group of messages will look up, read for the whole group at once and forgotten at any
write they could miss."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Executable, Table, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

# The session's read-ahead, present only inside `reading_ahead`.
_READ = "safetydesk_read_ahead"
# In the info of every session whose writes make it forget what it read ahead.
_WATCHED = "safetydesk_watches_read_ahead"
# Marks a write whose effect on what was read ahead its caller accounts for (see `accounted_for`).
_ACCOUNTED = "safetydesk_read_ahead_accounted"
# The tables rows are read ahead from: any other write to them forgets everything read.
_READ_TABLES = frozenset({"people", "inbound_messages"})
# At most this many values are asked for in one statement (SQLite's limit is 999 on old builds).
CHUNK = 300

E = TypeVar("E", bound=Executable)


@dataclass
class ReadAhead:
    """What was read ahead, by lookup. A key that is missing is looked up as usual; a key
    whose value is None was looked up and not found."""

    people: dict[str, tuple[int, str] | None] = field(default_factory=dict)
    seen: dict[Hashable, int | None] = field(default_factory=dict)

    def forget(self) -> None:
        self.people.clear()
        self.seen.clear()


def accounted_for(statement: E) -> E:
    """`statement`, marked as a write whose effect on read-ahead rows its callers account for:
    the person functions drop the entry they write, and the pipeline reads nothing ahead for a
    message that shares a Message-ID, bytes or mailbox UID with one before it in the group
    (a message's own records carry only its own)."""
    return statement.execution_options(**{_ACCOUNTED: True})


@contextmanager
def reading_ahead(session: Session) -> Iterator[ReadAhead]:
    """Within the block, `read_ahead(session)` gives what the block reads ahead; it is
    forgotten at any statement or flush that may change those rows behind it."""
    if not session.info.get(_WATCHED):
        raise RuntimeError("this session does not forget stale reads: see watch_read_ahead")
    ahead = ReadAhead()
    session.info[_READ] = ahead
    try:
        yield ahead
    finally:
        session.info.pop(_READ, None)


def read_ahead(session: Session) -> ReadAhead | None:
    found: ReadAhead | None = session.info.get(_READ)
    return found


def watch_read_ahead(sessions: sessionmaker[Session]) -> None:
    """Have `sessions` forget what they read ahead at any write that could make it stale."""
    sessions.configure(info={**sessions.kw.get("info", {}), _WATCHED: True})
    event.listen(sessions, "do_orm_execute", _before_statement)
    event.listen(sessions, "after_flush", _after_flush)


def _before_statement(state: ORMExecuteState) -> None:
    ahead = read_ahead(state.session)
    if ahead is None or state.is_select or state.execution_options.get(_ACCOUNTED):
        return
    table = getattr(state.statement, "table", None)
    written = state.is_insert or state.is_update
    if written and isinstance(table, Table) and table.name not in _READ_TABLES:
        return  # cases, attachments, the audit log, the outbox: nothing read ahead
    ahead.forget()  # a write to the rows read ahead, a delete, or a statement we cannot tell


def _after_flush(session: Session, _context: Any) -> None:
    ahead = read_ahead(session)
    if ahead is None:
        return
    changed = [*session.new, *session.dirty]
    if session.deleted or any(_table_of(row) in _READ_TABLES for row in changed):
        ahead.forget()


def _table_of(row: object) -> str | None:
    table = getattr(type(row), "__table__", None)
    return table.name if isinstance(table, Table) else None
