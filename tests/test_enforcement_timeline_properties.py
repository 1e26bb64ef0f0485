"""Random enforcement timelines over email: whatever happens when, the records stay consistent."""

from __future__ import annotations

import email.policy
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.db import transaction
from casework.models import (
    Action,
    ActionStatus,
    OutboxMessage,
    QuarantineEntry,
    Restriction,
    RestrictionStatus,
)
from casework.programs import import_roster, read_roster
from casework.settings import Step
from intake.pipeline import Outcome, SourceRef
from scheduler.app import App, build_app
from scheduler.config import parse_settings
from scheduler.enforcement_views import enforcement_answer
from scheduler.worker import run_once
from tests.conftest import MODERATORS
from tests.mail import make_mail
from tests.test_command_properties import examples

ASHA, RAVI = MODERATORS
KARAN = "karan.mentor@example.com"
TEAM = (KARAN, "meera.mentor@example.com", "sunil.support@example.com")
ROSTER = (
    "program,title,email,name,role\n"
    f"PY101,Python,{KARAN},Karan Mehta,mentor\n"
    "PY101,Python,meera.mentor@example.com,Meera Iyer,mentor\n"
    "PY101,Python,sunil.support@example.com,Sunil Das,support\n"
)
START = datetime(2027, 1, 4, 9, tzinfo=UTC)

# One step of a timeline: what happens, and how many days after the previous step.
STEPS = st.lists(
    st.tuples(
        # Appeals, decisions and approvals are drawn more often: they need a sanction first.
        st.sampled_from(
            ["warn", "strike", "escalate", "wait"] + ["appeal", "overturn", "uphold", "approve"] * 2
        ),
        # Short gaps (appeals and approvals within their windows) and long ones (expiry).
        st.one_of(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=200)),
    ),
    min_size=1,
    max_size=10,
)


class Timeline:
    """A fresh desk, driven by mail through the pipeline and by `run_once` on a FixedClock."""

    def __init__(self, folder: Path) -> None:
        (folder / "secret").write_text("a-long-enough-timeline-secret-0123456789")
        document = {
            "desk": {"address": "mentor4u@ecareermentor.in", "token_secret_file": "secret"},
            "database": {"url": f"sqlite:///{folder / 'desk.sqlite3'}"},
            "intake": {"source": "maildir", "maildir": "in"},
            "outbound": {"transport": "maildir", "maildir": "out"},
            "moderators": {"addresses": MODERATORS, "require_authenticated": False},
        }
        self.app: App = build_app(parse_settings(document, base=folder, environ={}), migrate=True)
        self.clock = FixedClock(START)
        self.reports = 0
        with transaction(self.app.sessions) as session:
            import_roster(session, read_roster(ROSTER), START)

    def feed(self, raw: bytes) -> None:
        result = self.app.pipeline.process(raw, SourceRef(label="timeline"), self.clock.now())
        assert result.outcome is Outcome.PROCESSED, result.reason

    def last(self, recipient: str, *templates: str) -> OutboxMessage | None:
        with self.app.sessions() as session:
            return session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.recipient == recipient)
                .where(OutboxMessage.template.in_(templates))
                .order_by(OutboxMessage.id.desc())
            ).first()

    def reply(self, to: OutboxMessage, sender: str, text: str) -> None:
        message = email.message_from_bytes(to.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        address = message["Reply-To"].addresses[0].addr_spec
        self.feed(
            make_mail(sender, f"Re: {to.subject}", text, to=address, in_reply_to=to.message_id)
        )

    def sanction(self, verb: str) -> None:
        self.reports += 1
        student = f"student{self.reports}@example.com"
        self.feed(make_mail(student, "Payment outside", f"{KARAN} wants payment on WhatsApp."))
        new_case = self.last(ASHA, "moderator/new-case")
        assert new_case is not None
        severity = "/severity high\n" if verb != "escalate" else ""
        self.reply(
            new_case,
            ASHA,
            f"/subject {KARAN}\n/category off-platform\n/program PY101\n{severity}"
            f"/{verb} Asked a student to pay outside eCareerMentor (report {self.reports}).",
        )

    def step(self, what: str) -> None:
        if what in ("warn", "strike", "escalate"):
            self.sanction(what)
        elif what == "appeal":
            notice = self.last(KARAN, "subject/warning", "subject/strike", "subject/ban")
            if notice is not None:
                self.reply(notice, KARAN, "I did not do this; please look again.")
        elif what in ("overturn", "uphold"):
            appeal = self.last(RAVI, "moderator/appeal")
            if appeal is not None:
                self.reply(appeal, RAVI, f"/{what} Reviewed the chat log again.")
        elif what == "approve":
            pending = self.last(RAVI, "moderator/ban-pending")
            if pending is not None:
                self.reply(pending, RAVI, "/approve")
        run_once(self.app, self.clock)

    def check(self) -> None:
        now = self.clock.now()
        with self.app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(QuarantineEntry)) == 0
            restrictions = session.scalars(select(Restriction)).all()
            actions = session.scalars(select(Action)).all()
            # The sweep has caught up: nothing due is still marked in force.
            for restriction in restrictions:
                if restriction.status is RestrictionStatus.ACTIVE and restriction.until:
                    assert restriction.until > now
            for action in actions:
                if action.status is ActionStatus.ACTIVE and action.kind is not Step.BAN:
                    assert action.counts_until is not None and action.counts_until > now
            # The platform's answer agrees with the rows in force.
            for person in TEAM:
                answer = enforcement_answer(session, self.app.desk.policy, person, now)
                in_force = [
                    r
                    for r in restrictions
                    if r.person.email == person and r.status is RestrictionStatus.ACTIVE
                ]
                assert answer["restricted"] == bool(in_force), (person, answer)
            # Each restriction that ended or was lifted restored the features at most once.
            restored = Counter(
                row.recipient
                for row in session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.template.in_(("subject/restored", "member/restored"))
                    )
                )
            )
            finished = Counter(
                r.person.email
                for r in restrictions
                if r.status in (RestrictionStatus.ENDED, RestrictionStatus.LIFTED)
            )
            for person, count in restored.items():
                assert count <= finished[person], (person, count, finished)
            # Nothing the team received names a reporter.
            for row in session.scalars(
                select(OutboxMessage).where(OutboxMessage.recipient.in_(TEAM))
            ):
                assert re.search(rb"student\d+@", row.raw) is None, row.template


@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
@example(steps=[("strike", 0), ("appeal", 1), ("overturn", 1), ("wait", 40), ("escalate", 1)])
@example(
    steps=[
        ("warn", 0),
        ("appeal", 2),
        ("uphold", 1),
        ("escalate", 20),
        ("appeal", 1),
        ("overturn", 1),
        ("escalate", 3),
        ("escalate", 10),
        ("approve", 1),
        ("wait", 200),
    ]
)
def test_any_timeline_keeps_records_answers_and_notices_consistent(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    timeline = Timeline(tmp_path_factory.mktemp("timeline"))
    try:
        for what, days in steps:
            timeline.clock.move_to(timeline.clock.now() + timedelta(days=days))
            timeline.step(what)
            timeline.check()
        with timeline.app.sessions() as session:
            for kind, status in session.execute(select(Action.kind, Action.status)).all():
                event(f"{kind} {status}")  # shown by --hypothesis-show-statistics
    finally:
        timeline.app.engine.dispose()
