"""New rows held in a session, written together before anything may read them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Executable, Insert, Table, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.sql.util import find_tables

from casework.ids_ahead import IdsAhead

# The session's held rows, by INSERT statement, in the order they were given.
_HELD = "safetydesk_held_rows"
# The ids the session's held rows may take ahead of their writing (PostgreSQL only).
_IDS = "safetydesk_ids_ahead"
# In the info of every session whose statements and commits write held rows first.
_WATCHED = "safetydesk_watches_held_rows"
# The names of the tables whose held rows must be written before a statement runs: those it
# reads and writes, and those their rows refer to. Rows of other tables may stay held while it
# runs; any statement without the mark writes every held row first.
_NEEDS = "safetydesk_needs_tables"

E = TypeVar("E", bound=Executable)


def naming_tables(statement: E) -> E:
    """`statement`, marked with the tables it reads and writes, so that rows held for other
    tables may stay held while it runs."""
    tables = [t for t in find_tables(statement, include_crud=True) if isinstance(t, Table)]  # type: ignore[arg-type]
    if not tables:
        raise ValueError(f"no table found in {statement}")
    needs = frozenset().union(*(_referred_to(t) for t in tables))
    return statement.execution_options(**{_NEEDS: needs})


def insert_rows(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Insert `rows`: at once, or, inside `holding_rows`, together with the others held.

    Rows given inside a savepoint are written at once, so that they go if it is rolled back.
    """
    held: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_HELD)
    if held is None or session.in_nested_transaction():
        _write(session, statement, rows)
    else:
        held.setdefault(statement, []).extend(rows)


def hold_row(session: Session, statement: Insert, values: dict[str, Any]) -> int:
    """Insert one row and give its id: inside `holding_rows` given ids ahead, the row is held
    with an id taken from them; otherwise, or with none on hand, it is written at once."""
    held: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_HELD)
    ids: IdsAhead | None = session.info.get(_IDS)
    table = statement.table
    row_id = None
    if held is not None and ids is not None and not session.in_nested_transaction():
        row_id = ids.take(table) if isinstance(table, Table) else None
    if held is None or row_id is None:
        return insert_row(session, statement, values)
    held.setdefault(statement, []).append({**values, "id": row_id})
    return row_id


def insert_row(session: Session, statement: Insert, values: dict[str, Any]) -> int:
    """Run a single-row INSERT in `session`'s transaction, at once; the new row's id."""
    key = cast(CursorResult[Any], session.execute(statement, values)).inserted_primary_key
    if key is None or key[0] is None:
        raise RuntimeError(f"the database gave no id for the new row: {statement.table}")
    return int(key[0])


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A savepoint that rows held before it cannot be rolled back with: they are written first."""
    write_held_rows(session)
    with session.begin_nested():
        yield


@contextmanager
def holding_rows(session: Session, ids: IdsAhead | None = None) -> Iterator[None]:
    """Within the block, `insert_rows` holds its rows, and so does `hold_row` while `ids` has
    ids on hand; they are written before any statement that may read them (one not marked by
    `naming_tables` or naming a table with rows held), before an ORM flush, before a commit,
    and at the block's end.

    Each kind of row is then one executemany: one round trip for the group instead of one per
    row. Should the block fail, the held rows are dropped with the transaction they belong to.
    """
    if not session.info.get(_WATCHED):
        raise RuntimeError("this session does not write held rows first: see watch_held_rows")
    session.info[_HELD] = {}
    if ids is not None:
        session.info[_IDS] = ids
    try:
        yield
        write_held_rows(session)
    finally:
        session.info.pop(_HELD, None)
        session.info.pop(_IDS, None)


@dataclass(frozen=True)
class Later:
    """A held row's value that is made only as its row is written: on PostgreSQL, while the
    server runs the statements of the rows written before it."""

    make: Callable[[], Any]


def holds_rows(session: Session) -> bool:
    """Whether rows given to `insert_rows` now are held (and a `Later` value waits with them)."""
    return session.info.get(_HELD) is not None and not session.in_nested_transaction()


def write_held_rows(session: Session, needed: Collection[str] | None = None) -> None:
    """Write the rows `session` holds, a table before the tables whose rows refer to it and
    otherwise in the order each kind was given. With `needed` (names of tables), only the held
    rows of those tables; the rest stay held."""
    held: dict[Insert, list[dict[str, Any]]] | None = session.info.get(_HELD)
    if not held:
        return
    batches = [(s, rows) for s, rows in held.items() if needed is None or _name(s.table) in needed]
    batches.sort(key=lambda batch: _rank(batch[0].table))
    for statement, _ in batches:  # before executing: the writes below must not find them again
        del held[statement]
    with _sent_together(session, len(batches)):
        for statement, rows in batches:
            _write(session, statement, rows)


@contextmanager
def _sent_together(session: Session, kinds: int) -> Iterator[None]:
    """On PostgreSQL, the writes of several kinds of row sent one after the other and answered
    together (a psycopg pipeline): the server runs each while the worker makes the next, its
    `Later` values included, instead of the worker waiting for each in turn.

    An error the server reports for a write is raised by the first statement to read answers
    after it, or by the pipeline's end; there it is raised as SQLAlchemy would have raised it.
    """
    connection = session.connection()
    if kinds < 2 or connection.dialect.name != "postgresql":
        yield
        return
    driver: Any = connection.connection.dbapi_connection
    error_base = connection.dialect.loaded_dbapi.Error
    try:
        with driver.pipeline():
            yield
    except error_base as error:
        raise DBAPIError.instance(
            None, None, error, error_base, dialect=connection.dialect
        ) from error


def _name(table: object) -> str | None:
    return table.name if isinstance(table, Table) else None


def _rank(table: object) -> int:
    """A table's place in its metadata's order, where each table follows those it refers to."""
    return _rank_of(table) if isinstance(table, Table) else 0


@cache
def _rank_of(table: Table) -> int:
    return table.metadata.sorted_tables.index(table)


@cache
def _referred_to(table: Table) -> frozenset[str]:
    """The names of `table` and of every table its rows refer to, directly or not."""
    found = {table.name: table}
    waiting = [table]
    while waiting:
        for key in waiting.pop().foreign_keys:
            parent = key.column.table
            if parent.name not in found and isinstance(parent, Table):
                found[parent.name] = parent
                waiting.append(parent)
    return frozenset(found)


def _write(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
    later = [key for key, value in rows[0].items() if isinstance(value, Later)]
    if later:  # a kind of row has them in the same columns; made here, in the rows' order
        rows = [{**row, **{key: _made(row[key]) for key in later}} for row in rows]
    # A single row goes as a plain execute, as every event and email did before rows were held.
    # Nothing is read back (inline: no RETURNING), so the write may wait in a pipeline.
    session.execute(_inline(statement), rows[0] if len(rows) == 1 else rows)


def _made(value: Any) -> Any:
    return value.make() if isinstance(value, Later) else value


@lru_cache(maxsize=64)
def _inline(statement: Insert) -> Insert:
    return statement.inline()


def watch_held_rows(sessions: sessionmaker[Session]) -> None:
    """Have `sessions` write held rows before anything that might read them, and before commit."""
    sessions.configure(info={**sessions.kw.get("info", {}), _WATCHED: True})
    event.listen(sessions, "do_orm_execute", _before_statement)
    event.listen(sessions, "before_commit", write_held_rows)
    event.listen(sessions, "before_flush", _before_flush)
    event.listen(sessions, "after_transaction_create", _refuse_bare_savepoint)


def _refuse_bare_savepoint(session: Session, transaction: SessionTransaction) -> None:
    """Rows held before a plain `begin_nested` would be written inside it, and lost with it."""
    if transaction.nested and session.info.get(_HELD):
        raise RuntimeError("rows are held: open the savepoint with casework.held_rows.savepoint")


def _before_statement(state: ORMExecuteState) -> None:
    held: dict[Insert, list[dict[str, Any]]] | None = state.session.info.get(_HELD)
    if not held:
        return
    write_held_rows(state.session, state.execution_options.get(_NEEDS))


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    """ORM rows may refer to held ones (a case, a person), and the ORM's flush runs no
    statement through the session: write those first."""
    if not session.info.get(_HELD):
        return
    flushed = {*session.new, *session.dirty, *session.deleted}
    tables = {getattr(type(row), "__table__", None) for row in flushed}
    write_held_rows(
        session, frozenset().union(*(_referred_to(t) for t in tables if isinstance(t, Table)))
    )
