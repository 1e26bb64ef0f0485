"""ISO 8601 durations with calendar arithmetic, as the policy counts months, not 30-day blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

_PATTERN = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


class DurationError(ValueError):
    """A text that is not an ISO 8601 duration such as P1M, P6M or PT30S."""


@dataclass(frozen=True)
class Duration:
    """A calendar-aware span: months are calendar months, days are calendar days."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = _PATTERN.match(text.strip().upper())
        if match is None:
            raise DurationError(f"{text!r} is not an ISO 8601 duration (e.g. P1M, P6M, PT30S)")
        parts = {key: int(value) for key, value in match.groupdict().items() if value}
        return cls(
            years=parts.get("years", 0),
            months=parts.get("months", 0),
            days=parts.get("days", 0) + 7 * parts.get("weeks", 0),
            seconds=parts.get("hours", 0) * 3600
            + parts.get("minutes", 0) * 60
            + parts.get("seconds", 0),
        )

    def after(self, start: datetime) -> datetime:
        """The moment this duration after `start` (31 Jan + P1M is 28/29 Feb)."""
        return start + relativedelta(
            years=self.years, months=self.months, days=self.days, seconds=self.seconds
        )

    def before(self, end: datetime) -> datetime:
        """The moment this duration before `end`."""
        return end - relativedelta(
            years=self.years, months=self.months, days=self.days, seconds=self.seconds
        )

    def approximate(self) -> timedelta:
        """A fixed-length estimate, only for intervals between jobs (never for sanctions)."""
        return timedelta(days=365 * self.years + 30 * self.months + self.days, seconds=self.seconds)

    def __str__(self) -> str:
        date = "".join(
            f"{value}{unit}"
            for value, unit in ((self.years, "Y"), (self.months, "M"), (self.days, "D"))
            if value
        )
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        time = "".join(
            f"{value}{unit}"
            for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
            if value
        )
        text = "P" + date + ("T" + time if time else "")
        return text if text != "P" else "PT0S"

    def describe(self) -> str:
        """Human words: '1 month', '6 months', '30 seconds'."""
        words = []
        for value, unit in (
            (self.years, "year"),
            (self.months, "month"),
            (self.days, "day"),
        ):
            if value:
                words.append(f"{value} {unit}{'s' if value != 1 else ''}")
        if self.seconds:
            hours, rest = divmod(self.seconds, 3600)
            minutes, seconds = divmod(rest, 60)
            for value, unit in ((hours, "hour"), (minutes, "minute"), (seconds, "second")):
                if value:
                    words.append(f"{value} {unit}{'s' if value != 1 else ''}")
        return ", ".join(words) or "no time"


def doubling_delay(first: float, cap: float, attempt: int) -> float:
    """The wait before retry `attempt` (from 1): `first`, doubled each time, at most `cap`."""
    return min(cap, first * float(2 ** min(max(attempt - 1, 0), 32)))
