"""A person's standing under the escalation ladder, computed purely from their records and `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from casework.models import ActionStatus, RestrictionKind, RestrictionScope, RestrictionStatus
from casework.settings import PolicySettings, Step

# Actions that are on the person's record; the rest were never in force or were undone.
ON_RECORD = (ActionStatus.ACTIVE, ActionStatus.EXPIRED)


@dataclass(frozen=True)
class ActionFact:
    """What the standing needs to know about one action."""

    id: int
    case_id: int
    kind: Step
    status: ActionStatus
    effective_at: datetime | None
    counts_until: datetime | None

    def on_record_at(self, now: datetime) -> bool:
        return (
            self.status in ON_RECORD and self.effective_at is not None and self.effective_at <= now
        )

    def counts_at(self, now: datetime) -> bool:
        """Still counting on the rolling basis: issued, and its counting period not over."""
        return self.on_record_at(now) and (self.counts_until is None or now < self.counts_until)


@dataclass(frozen=True)
class RestrictionFact:
    """What the enforcement answer needs to know about one restriction."""

    id: int
    action_id: int
    case_id: int
    scope: RestrictionScope
    program: str | None
    kind: RestrictionKind
    status: RestrictionStatus
    since: datetime
    until: datetime | None

    def in_force_at(self, now: datetime) -> bool:
        """By the clock, not by the sweep: exact even when the sweep has not run yet."""
        return (
            self.status is RestrictionStatus.ACTIVE
            and self.since <= now
            and (self.until is None or now < self.until)
        )

    def applies_to(self, program: str | None) -> bool:
        """Account restrictions apply everywhere; program ones only in their program."""
        return self.scope is RestrictionScope.ACCOUNT or program is None or self.program == program


@dataclass(frozen=True)
class Counting:
    """One warning or strike that counts now, and when it stops counting."""

    action_id: int
    case_id: int
    kind: Step
    since: datetime
    until: datetime | None


@dataclass(frozen=True)
class Standing:
    """Where a person stands at one moment."""

    at: datetime
    active_warnings: tuple[Counting, ...]
    active_strikes: tuple[Counting, ...]
    lifetime_strikes: int
    strikes_in_history_window: int
    banned: bool
    ban_pending: bool
    next_step: Step | None


def compute_standing(policy: PolicySettings, actions: list[ActionFact], now: datetime) -> Standing:
    """The standing at `now`: what counts until when, lifetime strikes, and the next step."""
    counting = sorted(
        (
            Counting(a.id, a.case_id, a.kind, a.effective_at, a.counts_until)
            for a in actions
            if a.kind in (Step.WARNING, Step.STRIKE) and a.counts_at(now) and a.effective_at
        ),
        key=lambda c: (c.since, c.action_id),
    )
    warnings = tuple(c for c in counting if c.kind is Step.WARNING)
    strikes = tuple(c for c in counting if c.kind is Step.STRIKE)
    on_record = [a for a in actions if a.kind is Step.STRIKE and a.on_record_at(now)]
    window_start = policy.history_window.before(now)
    in_window = sum(1 for a in on_record if a.effective_at and a.effective_at > window_start)
    banned = any(a.kind is Step.BAN and a.counts_at(now) for a in actions)
    pending = any(a.kind is Step.BAN and a.status is ActionStatus.PENDING for a in actions)
    return Standing(
        at=now,
        active_warnings=warnings,
        active_strikes=strikes,
        lifetime_strikes=len(on_record),
        strikes_in_history_window=in_window,
        banned=banned,
        ban_pending=pending,
        next_step=_next_step(policy, warnings, strikes, in_window, banned),
    )


def _next_step(
    policy: PolicySettings,
    warnings: tuple[Counting, ...],
    strikes: tuple[Counting, ...],
    in_window: int,
    banned: bool,
) -> Step | None:
    ladder = policy.ladder
    if banned:
        return None
    # Policy: "those with an ongoing history of policy violations will ultimately face removal".
    if policy.history_strikes > 0 and in_window >= policy.history_strikes and Step.BAN in ladder:
        return Step.BAN
    reached = [ladder.index(c.kind) for c in (*warnings, *strikes) if c.kind in ladder]
    if not reached:
        return ladder[0]
    return ladder[min(max(reached) + 1, len(ladder) - 1)]


def restrictions_in_force(
    restrictions: list[RestrictionFact], now: datetime, program: str | None = None
) -> list[RestrictionFact]:
    """The restrictions that hold at `now`, for one program (account ones always apply)."""
    return sorted(
        (r for r in restrictions if r.in_force_at(now) and r.applies_to(program)),
        key=lambda r: (r.since, r.id),
    )


def step_index(policy: PolicySettings, step: Step) -> int | None:
    return policy.ladder.index(step) if step in policy.ladder else None
