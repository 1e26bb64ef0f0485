"""Audit and outbox rows held in a session, written together before anything may read them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Executable, Insert, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

# The session's held rows, by INSERT statement, in the order they were given.
_HELD = "safetydesk_held_rows"
# In the info of every session whose statements and commits write held rows first.
_WATCHED = "safetydesk_watches_held_rows"
# Marks a statement that reads and writes no table whose rows may be held (the audit log, the
# outbox): it may run while rows are held. Any statement without the mark writes them first.
_BLIND = "safetydesk_blind_to_held_rows"

E = TypeVar("E", bound=Executable)


def blind_to_held_rows(statement: E) -> E:
    """`statement`, marked as touching none of the tables whose rows may be held."""
    return statement.execution_options(**{_BLIND: True})


def insert_rows(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Insert `rows`: at once, or, inside `holding_rows`, together with the others held.

    Rows given inside a savepoint are written at once, so that they go if it is rolled back.
    """
    held: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_HELD)
    if held is None or session.in_nested_transaction():
        _write(session, statement, rows)
    else:
        held.setdefault(statement, []).extend(rows)


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A savepoint that rows held before it cannot be rolled back with: they are written first."""
    write_held_rows(session)
    with session.begin_nested():
        yield


@contextmanager
def holding_rows(session: Session) -> Iterator[None]:
    """Within the block, `insert_rows` holds its rows; they are written before any statement
    not marked `blind_to_held_rows`, before a commit, and at the block's end.

    Each kind of row is then one executemany: one round trip for the group instead of one per
    row. Should the block fail, the held rows are dropped with the transaction they belong to.
    """
    if not session.info.get(_WATCHED):
        raise RuntimeError("this session does not write held rows first: see watch_held_rows")
    session.info[_HELD] = {}
    try:
        yield
        write_held_rows(session)
    finally:
        session.info.pop(_HELD, None)


def write_held_rows(session: Session) -> None:
    """Write every row `session` holds, in the order each kind was given."""
    held: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_HELD)
    if not held:
        return
    batches = list(held.items())
    held.clear()  # before executing: the writes below must not find them again
    for statement, rows in batches:
        _write(session, statement, rows)


def _write(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    # A single row goes as a plain execute, as every event and email did before rows were held.
    session.execute(statement, rows[0] if len(rows) == 1 else rows)


def watch_held_rows(sessions: sessionmaker[Session]) -> None:
    """Have `sessions` write held rows before anything that might read them, and before commit."""
    sessions.configure(info={**sessions.kw.get("info", {}), _WATCHED: True})
    event.listen(sessions, "do_orm_execute", _before_statement)
    event.listen(sessions, "before_commit", write_held_rows)
    event.listen(sessions, "after_transaction_create", _refuse_bare_savepoint)


def _refuse_bare_savepoint(session: Session, transaction: SessionTransaction) -> None:
    """Rows held before a plain `begin_nested` would be written inside it, and lost with it."""
    if transaction.nested and session.info.get(_HELD):
        raise RuntimeError("rows are held: open the savepoint with casework.held_rows.savepoint")


def _before_statement(state: ORMExecuteState) -> None:
    if state.session.info.get(_HELD) and not state.execution_options.get(_BLIND):
        write_held_rows(state.session)
