"""The clock the worker runs on: real time, or a fixed instant for replays and tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Something that says what time it is, always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stays where it is put and moves only when told (tests, `--now`)."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def move_to(self, when: datetime) -> None:
        self.current = as_utc(when)


def as_utc(when: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
