"""PostgreSQL plans for lookups over growing tables: made for the tables as they are, by index."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from casework.clock import FixedClock
from casework.db import planned_afresh
from intake.pipeline import Outcome
from intake.seen import _CANDIDATES
from scheduler.app import App
from tests.mail import make_mail
from tests.test_pipeline_groups import pending

pytestmark = pytest.mark.postgres


def reports(count: int, first: int = 0) -> list[bytes]:
    return [
        make_mail(
            sender=f"student{n}@example.com",
            subject=f"Report {n}",
            body="My mentor karan.mentor@example.com asked me to pay him.",
        )
        for n in range(first, first + count)
    ]


def test_the_group_lookups_are_never_kept_as_prepared_plans(pg_app: App, clock: FixedClock) -> None:
    # More groups than psycopg's five executions before it prepares a statement.
    for group in range(8):
        batch = pending(pg_app, *reports(2, group * 2), first_uid=group * 2 + 1)
        results = list(pg_app.pipeline.process_group(batch, clock.now))
        assert [r.outcome for r in results] == [Outcome.PROCESSED] * 2
    assert pg_app.engine.pool.checkedin() == 1  # the one connection the groups used
    with pg_app.engine.connect() as connection:
        held = list(connection.scalars(text("SELECT statement FROM pg_prepared_statements")))
    assert any(s.startswith("INSERT INTO cases") for s in held)  # the rest are prepared
    assert not [s for s in held if "FROM people" in s or "FROM inbound_messages" in s]


def test_a_known_reporters_history_is_never_kept_as_a_prepared_plan(
    pg_app: App, clock: FixedClock
) -> None:
    # The same reporter again and again: each new case counts their earlier ones.
    for n in range(8):
        mail = make_mail(sender="student1@example.com", subject=f"Report {n}")
        (result,) = pg_app.pipeline.process_group(pending(pg_app, mail, first_uid=n + 1), clock.now)
        assert result.outcome is Outcome.PROCESSED
    with pg_app.engine.connect() as connection:
        held = list(connection.scalars(text("SELECT statement FROM pg_prepared_statements")))
    assert any(s.startswith("INSERT INTO cases") for s in held)
    assert not [s for s in held if "count(*) FILTER" in s]


def test_statements_outside_the_block_are_prepared_as_before(pg_app: App) -> None:
    with pg_app.sessions() as session:
        with planned_afresh(session):
            for _ in range(8):
                session.execute(text("SELECT count(*) FROM people"))
        for _ in range(8):
            session.execute(text("SELECT count(*) FROM cases"))
        held = list(session.scalars(text("SELECT statement FROM pg_prepared_statements")))
    assert "SELECT count(*) FROM cases" in held
    assert "SELECT count(*) FROM people" not in held


def test_the_uid_lookup_stays_within_the_index_range_before_any_statistics(
    pg_app: App, clock: FixedClock
) -> None:
    for start in range(0, 120, 40):
        batch = pending(pg_app, *reports(40, start), first_uid=start + 1)
        list(pg_app.pipeline.process_group(batch, clock.now))
    statement = _CANDIDATES.params(
        mailbox="test", uidvalidity=1, lowest_uid=101, highest_uid=103, uids=[101, 103],
        message_ids=["<none@client.example>"], digests=[],
    )  # fmt: skip
    sql = statement.compile(dialect=pg_app.engine.dialect, compile_kwargs={"literal_binds": True})
    with pg_app.engine.connect() as connection:
        plan = "\n".join(connection.scalars(text(f"EXPLAIN ANALYZE {sql}")))
    uid_scan = plan.split("Index Scan using uq_inbound_mailbox_uid")[1].split("->")[0]
    assert "(uid >= 101) AND (uid <= 103)" in uid_scan, plan
    assert "Rows Removed by Filter: 1\n" in uid_scan, plan  # uid 102 alone, not all 120
