"""What the ladder refuses, ongoing history, configured ladders and the pure standing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.db import transaction
from casework.durations import Duration
from casework.enforcement import EnforcementError, apply_sanction, reject_ban
from casework.models import Action, ActionStatus, Case, CaseStatus, OutboxMessage
from casework.policy import ActionFact, compute_standing
from casework.settings import PolicySettings, Step
from scheduler.app import App, build_app
from tests.conftest import SettingsFactory
from tests.enforcement_kit import ASHA, RAVI, command, enforcement, open_report, write_config

KARAN = "karan.mentor@example.com"


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 9, tzinfo=UTC)


def sanction(app: App, case_id: int, step: Step | None, now: datetime, facts: str = "F.") -> str:
    return command(
        app, case_id, lambda s, c: apply_sanction(app.desk, s, c, ASHA, step, facts, now)
    )


def outbox_count(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_refusals_say_why_and_change_nothing(app: App, clock: FixedClock) -> None:
    now = clock.now()
    no_rule = open_report(app, now, subject=KARAN, rule=None)
    with pytest.raises(EnforcementError, match="no rule set"):
        sanction(app, no_rule, None, now)
    case_id = open_report(app, now, subject=KARAN)
    with pytest.raises(EnforcementError, match="needs the facts relied on: /warn TEXT"):
        sanction(app, case_id, Step.WARNING, now, facts="  ")
    with pytest.raises(EnforcementError, match=r"next step .* is a warning; skipping to a strike"):
        sanction(app, case_id, Step.STRIKE, now)
    with pytest.raises(EnforcementError, match="severity"):
        sanction(app, case_id, Step.BAN, now)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Action)) == 0
    assert outbox_count(app) == 0
    sanction(app, case_id, None, now)
    with pytest.raises(EnforcementError, match="already has A-1"):
        sanction(app, case_id, None, now)
    merged = open_report(app, now, subject=KARAN)
    with transaction(app.sessions) as session:
        session.get_one(Case, merged).status = CaseStatus.MERGED
        session.get_one(Case, merged).merged_into_id = case_id
    with pytest.raises(EnforcementError, match=f"merged into TS-{case_id}"):
        sanction(app, merged, None, now)
    with pytest.raises(EnforcementError, match="no ban waiting"):
        command(app, case_id, lambda s, c: reject_ban(app.desk, s, c, RAVI, "no", now))


def test_a_pending_ban_can_be_rejected_and_nobody_is_told(app: App, clock: FixedClock) -> None:
    case_id = open_report(app, clock.now(), subject=KARAN, severity="critical")
    sanction(app, case_id, Step.BAN, clock.now())
    with pytest.raises(EnforcementError, match="already waiting"):
        other = open_report(app, clock.now(), subject=KARAN, severity="critical")
        sanction(app, other, Step.STRIKE, clock.now())
    before = outbox_count(app)
    summary = command(
        app, case_id, lambda s, c: reject_ban(app.desk, s, c, RAVI, "Too harsh.", clock.now())
    )
    assert "rejected" in summary
    assert outbox_count(app) == before
    with app.sessions() as session:
        assert session.get_one(Action, 1).status is ActionStatus.REJECTED


def test_ongoing_history_makes_the_next_step_a_ban(app: App, tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    for when in (at(2027, 1, 4), at(2027, 8, 4), at(2028, 3, 4)):
        case_id = open_report(app, when, subject=KARAN, severity="high")
        sanction(app, case_id, Step.STRIKE, when)
    # Every strike has expired by October 2028, but three in 24 months is an ongoing history.
    answer = enforcement(config, KARAN, at(2028, 10, 1))
    assert answer["standing"]["active_strikes"] == []
    assert answer["standing"]["lifetime_strikes"] == 3
    assert answer["standing"]["next_step"] == "ban"
    case_id = open_report(app, at(2028, 10, 1), subject=KARAN)
    assert "ban of karan.mentor@example.com proposed" in sanction(
        app, case_id, None, at(2028, 10, 1)
    )
    # Once the first strike is more than 24 months old the history no longer forces a ban.
    later = enforcement(config, KARAN, at(2029, 1, 5))
    assert later["standing"]["strikes_in_history_window"] == 2


@pytest.fixture
def lenient_app(make_settings: SettingsFactory, sqlite_url: str) -> Iterator[App]:
    settings = make_settings(
        sqlite_url,
        policy={
            "ladder": ["strike", "ban"],
            "ban_needs_second_moderator": False,
            "suspension": "P2W",
        },
    )
    built = build_app(settings, migrate=True)
    yield built
    built.engine.dispose()


def test_a_configured_ladder_and_immediate_bans(lenient_app: App, clock: FixedClock) -> None:
    app = lenient_app
    case_id = open_report(app, clock.now(), subject=KARAN)
    with pytest.raises(EnforcementError, match="not a step of the configured ladder"):
        sanction(app, case_id, Step.WARNING, clock.now())
    assert "suspended until 2027-01-18 09:00" in sanction(app, case_id, None, clock.now())
    second = open_report(app, clock.now(), subject=KARAN)
    assert "A-2: ban of karan.mentor@example.com in effect" in sanction(
        app, second, None, clock.now()
    )


def test_standing_is_a_pure_function_of_records_and_now() -> None:
    policy = PolicySettings()
    warning = ActionFact(1, 1, Step.WARNING, ActionStatus.ACTIVE, at(2027, 1, 4), at(2027, 7, 4))
    strike = ActionFact(2, 2, Step.STRIKE, ActionStatus.EXPIRED, at(2027, 2, 1), at(2027, 8, 1))
    undone = ActionFact(3, 3, Step.STRIKE, ActionStatus.OVERTURNED, at(2027, 3, 1), None)
    assert compute_standing(policy, [], at(2027, 1, 1)).next_step is Step.WARNING
    standing = compute_standing(policy, [warning, strike, undone], at(2027, 3, 1))
    assert [c.action_id for c in standing.active_warnings] == [1]
    assert [c.action_id for c in standing.active_strikes] == [2]
    assert standing.lifetime_strikes == 1 and standing.next_step is Step.BAN
    # The status left by the sweep does not matter: the dates decide.
    standing = compute_standing(policy, [warning, strike], at(2027, 7, 4))
    assert standing.active_warnings == () and standing.next_step is Step.BAN
    standing = compute_standing(policy, [warning, strike], at(2027, 8, 1))
    assert standing.active_strikes == () and standing.next_step is Step.WARNING
    # Not yet issued at `now`: not on the record.
    assert compute_standing(policy, [strike], at(2027, 1, 31)).lifetime_strikes == 0
    custom = PolicySettings(history_strikes=1, history_window=Duration(months=12))
    assert compute_standing(custom, [strike], at(2027, 9, 1)).next_step is Step.BAN
    assert compute_standing(custom, [strike], at(2028, 2, 2)).next_step is Step.WARNING


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        (["warning", "strike"], 'must end with "ban"'),
        (["strike", "warning", "ban"], "order: warning, strike, ban"),
        (["strike", "strike", "ban"], "appears twice"),
        (["caution", "ban"], "caution"),
    ],
)
def test_a_bad_ladder_is_a_config_error(
    make_settings: SettingsFactory, sqlite_url: str, ladder: list[str], message: str
) -> None:
    from scheduler.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_settings(sqlite_url, policy={"ladder": ladder})
