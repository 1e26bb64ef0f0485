"""Properties of the pure standing over arbitrary records and moments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from casework.models import ActionStatus
from casework.policy import ActionFact, compute_standing
from casework.settings import PolicySettings, Step

POLICY = PolicySettings()
START = datetime(2027, 1, 1, tzinfo=UTC)


@st.composite
def action_facts(draw: st.DrawFn) -> list[ActionFact]:
    facts = []
    for index in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(list(Step)))
        status = draw(st.sampled_from(list(ActionStatus)))
        issued = START + timedelta(days=draw(st.integers(0, 1500)))
        counts = {
            Step.WARNING: POLICY.warning_counts_for,
            Step.STRIKE: POLICY.strike_counts_for,
        }.get(kind)
        effective = None if status is ActionStatus.PENDING else issued
        until = counts.after(issued) if counts else None
        facts.append(ActionFact(index + 1, index + 1, kind, status, effective, until))
    return facts


moments = st.integers(0, 2500).map(lambda days: START + timedelta(days=days))


@given(action_facts(), moments)
def test_undone_actions_never_change_the_standing(facts: list[ActionFact], now: datetime) -> None:
    undone = (ActionStatus.OVERTURNED, ActionStatus.REVOKED, ActionStatus.REJECTED)
    kept = [f for f in facts if f.status not in undone]
    assert compute_standing(POLICY, facts, now) == compute_standing(POLICY, kept, now)


@given(action_facts(), moments)
def test_the_next_step_follows_the_ladder(facts: list[ActionFact], now: datetime) -> None:
    standing = compute_standing(POLICY, facts, now)
    assert (standing.next_step is None) == standing.banned
    if standing.banned:
        return
    if standing.active_strikes or standing.strikes_in_history_window >= 3:
        assert standing.next_step is Step.BAN
    elif standing.active_warnings:
        assert standing.next_step is Step.STRIKE
    else:
        assert standing.next_step is Step.WARNING
    assert all(c.until is not None and now < c.until for c in standing.active_strikes)
    assert standing.lifetime_strikes >= standing.strikes_in_history_window


@given(action_facts())
def test_long_after_everything_only_history_and_bans_remain(facts: list[ActionFact]) -> None:
    later = START + timedelta(days=365 * 10)
    standing = compute_standing(POLICY, facts, later)
    assert standing.active_warnings == () and standing.active_strikes == ()
    assert standing.strikes_in_history_window == 0
    assert standing.next_step in (None, Step.WARNING)
