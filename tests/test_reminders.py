"""Reminder and digest sweeps: sent once per threshold crossing and once a day, via `run --once`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from casework.clock import FixedClock
from scheduler.app import App
from scheduler.config import ConfigError
from scheduler.worker import run_once
from tests.conftest import SettingsFactory
from tests.desk_helpers import (
    ASHA,
    PRIYA,
    RAVI,
    feed,
    moderator_reply,
    open_report,
    outbox,
    reply_to_of,
)
from tests.mail import make_mail


def sweep(app: App, clock: FixedClock) -> None:
    run_once(app, clock)


def test_unassigned_reminder_once_per_crossing(app: App, clock: FixedClock) -> None:
    case_id = open_report(app, clock.now())
    sweep(app, clock)
    assert outbox(app, template="moderator/reminder") == []
    clock.move_to(clock.now() + timedelta(days=1, minutes=1))
    sweep(app, clock)
    first = outbox(app, template="moderator/reminder")
    assert sorted(row.recipient for row in first) == sorted([ASHA, RAVI])
    assert all(row.case_id == case_id for row in first)
    assert "nobody has taken" in first[0].subject
    clock.move_to(clock.now() + timedelta(hours=6))
    sweep(app, clock)
    assert len(outbox(app, template="moderator/reminder")) == 2  # not again


def test_unanswered_reminder_goes_to_the_assignee_and_rearms(app: App, clock: FixedClock) -> None:
    case_id = open_report(app, clock.now())
    feed(app, moderator_reply(app, case_id, "/assign me", auth=()), clock.now())
    clock.move_to(clock.now() + timedelta(days=3, minutes=1))
    sweep(app, clock)
    reminders = outbox(app, template="moderator/reminder")
    assert [row.recipient for row in reminders] == [ASHA]
    assert "waiting for an answer" in reminders[0].subject
    sweep(app, clock)
    assert len(outbox(app, template="moderator/reminder")) == 1
    # The moderator answers; then the reporter writes again: a new wait, a new reminder.
    feed(app, moderator_reply(app, case_id, "/reply Looking into it.", auth=()), clock.now())
    clock.move_to(clock.now() + timedelta(days=4))
    sweep(app, clock)
    assert len(outbox(app, template="moderator/reminder")) == 1
    ack = outbox(app, recipient=PRIYA, template="reporter/acknowledgement")[0]
    feed(app, make_mail(PRIYA, f"Re: {ack.subject}", "Any news?", to=reply_to_of(ack)), clock.now())
    clock.move_to(clock.now() + timedelta(days=2))
    sweep(app, clock)
    assert len(outbox(app, template="moderator/reminder")) == 1
    clock.move_to(clock.now() + timedelta(days=1, minutes=1))
    sweep(app, clock)
    assert len(outbox(app, template="moderator/reminder")) == 2


def test_closed_cases_get_no_reminders(app: App, clock: FixedClock) -> None:
    case_id = open_report(app, clock.now())
    feed(app, moderator_reply(app, case_id, "/close duplicate", auth=()), clock.now())
    clock.move_to(clock.now() + timedelta(days=10))
    sweep(app, clock)
    assert outbox(app, template="moderator/reminder") == []


def test_digest_once_a_day_from_the_digest_hour(app: App, tmp_path: Path) -> None:
    clock = FixedClock(datetime(2027, 1, 4, 7, 30, tzinfo=UTC))
    open_report(app, clock.now())
    sweep(app, clock)
    assert outbox(app, template="moderator/digest") == []
    clock.move_to(datetime(2027, 1, 4, 8, 0, tzinfo=UTC))
    sweep(app, clock)
    digests = outbox(app, template="moderator/digest")
    assert sorted(row.recipient for row in digests) == sorted([ASHA, RAVI])
    assert "1 open case(s)" in digests[0].subject
    assert b"TS-1" in digests[0].raw
    clock.move_to(datetime(2027, 1, 4, 17, 0, tzinfo=UTC))
    sweep(app, clock)
    assert len(outbox(app, template="moderator/digest")) == 2
    # After downtime the next day's digest still goes out, once.
    clock.move_to(datetime(2027, 1, 5, 23, 0, tzinfo=UTC))
    sweep(app, clock)
    sweep(app, clock)
    assert len(outbox(app, template="moderator/digest")) == 4
    # `run --once` delivered them too.
    delivered = list((tmp_path / "out" / "new").iterdir())
    assert any(b"Trust & Safety digest for 2027-01-05" in p.read_bytes() for p in delivered)


def test_digest_hour_must_be_an_hour(make_settings: SettingsFactory, sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="digest_hour: expected an hour of the day"):
        make_settings(sqlite_url, moderators={"digest_hour": 24})
    assert make_settings(sqlite_url, moderators={"digest_hour": 23}).moderators.digest_hour == 23
