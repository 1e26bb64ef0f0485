"""Row ids drawn from PostgreSQL's sequences ahead of their rows, so that new rows can be held."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Table, bindparam, cast, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class IdsAhead:
    """Ids one worker drew from the database's sequences and has not used yet, by table.

    Ids a group did not use wait for the next group, and those taken by a group rolled back
    before its commit are given back (`returned_on_rollback`), so a table's ids skip only those
    still on hand when the worker stops and those of a write the database refused or a commit
    that failed (either may be about the ids themselves). On SQLite, which has no sequences,
    nothing is drawn and every row is written at once. Ids are lent to one transaction at a
    time (the intake's group).
    """

    def __init__(self) -> None:
        self._free: dict[str, deque[int]] = {}
        self._taken: list[tuple[str, int]] = []
        self._lending = False
        self._sequences: dict[str, str] = {}  # by table: the sequence its ids come from

    def on_hand(self, table: Table) -> int:
        return len(self._free.get(table.name, ()))

    def top_up(self, session: Session, wanted: Mapping[Table, int]) -> None:
        """Have at least `wanted[table]` ids of each table on hand, drawn in one statement."""
        if session.get_bind().dialect.name != "postgresql":
            return
        short = {t: n - self.on_hand(t) for t, n in wanted.items() if n > self.on_hand(t)}
        if not short:
            return
        self._find_sequences(session, short)
        draws = [
            select(
                literal(table.name).label("name"),
                func.nextval(cast(bindparam(f"s_{table.name}"), REGCLASS)).label("id"),
            ).select_from(func.generate_series(1, bindparam(f"n_{table.name}")))
            for table in short
        ]
        statement = draws[0] if len(draws) == 1 else union_all(*draws)
        values: dict[str, object] = {}
        for table, count in short.items():
            values[f"n_{table.name}"] = count
            values[f"s_{table.name}"] = self._sequences[table.name]
        for name, row_id in session.execute(statement, values).all():
            self._free.setdefault(name, deque()).append(int(row_id))  # above all on hand

    def _find_sequences(self, session: Session, tables: Iterable[Table]) -> None:
        """Look up once the sequences of tables not met before (a migration names them)."""
        for table in tables:
            if table.name not in self._sequences:
                found = session.scalar(select(func.pg_get_serial_sequence(table.name, "id")))
                if found is None:
                    raise RuntimeError(f"{table.name}.id takes its values from no sequence")
                self._sequences[table.name] = str(found)

    def take(self, table: Table) -> int | None:
        """An id for a new row of `table`, or None when none is on hand."""
        free = self._free.get(table.name)
        if not free:
            return None
        row_id = free.popleft()
        self._taken.append((table.name, row_id))
        return row_id

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Ids taken in the block are spent when it ends, unless `returned_on_rollback` gave
        them back."""
        if self._lending:
            raise RuntimeError("these ids are already lent to another transaction")
        self._lending = True
        try:
            yield
        finally:
            self._taken.clear()
            self._lending = False

    @contextmanager
    def returned_on_rollback(self) -> Iterator[None]:
        """Inside a transaction, before its commit: should the block raise, the transaction is
        rolled back, and the ids taken so far go back to be used again. Not when the database
        refused a write: the value it refused may be one of them. (A failed commit is not
        covered: it may have been applied, for all the worker can tell.)"""
        try:
            yield
        except BaseException as error:
            if not isinstance(error, DBAPIError):
                self._give_back()
            raise

    def _give_back(self) -> None:
        for name, row_id in reversed(self._taken):  # below those on hand: first out again
            self._free.setdefault(name, deque()).appendleft(row_id)
        self._taken.clear()
