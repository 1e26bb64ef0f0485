"""Typed settings the domain needs: the desk, its moderators and the enforcement policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from casework.durations import Duration


class Step(StrEnum):
    """A rung of the escalation ladder (policy: Escalation Process for Policy Violations)."""

    WARNING = "warning"
    STRIKE = "strike"
    BAN = "ban"


@dataclass(frozen=True)
class DeskSettings:
    """Who the desk is on the wire."""

    address: str = "mentor4u@ecareermentor.in"
    name: str = "eCareerMentor Trust & Safety"
    token_secret: bytes = b""
    resources_url: str = "https://www.ecareermentor.in/trust-and-safety"

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True)
class ModeratorSettings:
    """Who may command the desk, and how their mail must be authenticated."""

    addresses: tuple[str, ...] = ()
    require_authenticated: bool = True
    trusted_authserv_ids: tuple[str, ...] = ()
    unassigned_after: Duration = Duration(days=1)
    unanswered_after: Duration = Duration(days=3)
    digest_hour: int = 8

    def is_moderator(self, address: str) -> bool:
        return address.strip().lower() in {a.lower() for a in self.addresses}


DEFAULT_SUSPENSION_FEATURES = (
    "publishing programs",
    "messaging students",
    "receiving new enrolments",
)


@dataclass(frozen=True)
class PolicySettings:
    """The escalation ladder and its clocks; defaults are the published policy's."""

    ladder: tuple[Step, ...] = (Step.WARNING, Step.STRIKE, Step.BAN)
    suspension: Duration = Duration(months=1)
    strike_counts_for: Duration = Duration(months=6)
    warning_counts_for: Duration = Duration(months=6)
    history_strikes: int = 3
    history_window: Duration = Duration(months=24)
    ban_needs_second_moderator: bool = True
    appeal_window: Duration = Duration(days=14)
    suspension_disables: tuple[str, ...] = field(default=DEFAULT_SUSPENSION_FEATURES)
