"""Enforcement at scale: N strikes, the enforcement answer, and the catch-up sweep after downtime.

Usage: .venv/bin/python bench/enforcement_bench.py [--strikes 1000] [--database sqlite|postgres]

Builds a throwaway database (SQLite in a temporary folder, or a new PostgreSQL database on
127.0.0.1:5432), issues N strikes with their notices (every tenth in a program of five members,
so with program restrictions), times `enforcement_answer` for each sanctioned person, then moves
the clock seven months on and times the sweep that ends every suspension and restriction and
expires every strike (with their notices), and the same sweep run again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench.scratch import MODERATOR, bench_settings, scratch_database
from casework.db import transaction
from casework.enforcement import apply_sanction
from casework.models import Case, CaseKind, Program
from casework.people import ensure_person
from casework.programs import import_roster, read_roster
from casework.settings import Step
from casework.sweeps import EnforcementSweep
from scheduler.app import build_app
from scheduler.enforcement_views import enforcement_answer

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strikes", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    with scratch_database(args.database, folder) as url:
        settings = bench_settings(
            folder, url, moderators={"addresses": [MODERATOR], "trusted_authserv_ids": ["mx"]}
        )
        app = build_app(settings, migrate=True)
        programs = args.strikes // 10
        roster = "program,title,email,name,role\n" + "".join(
            f"P{p},Program {p},m{p}-{n}@example.com,Member {n},{'mentor' if n < 3 else 'support'}\n"
            for p in range(programs)
            for n in range(5)
        )
        with transaction(app.sessions) as session:
            import_roster(session, read_roster(roster), START)
        people = [
            f"m{n // 10}-0@example.com" if n % 10 == 0 else f"mentor{n}@example.com"
            for n in range(args.strikes)
        ]

        started = time.perf_counter()
        with transaction(app.sessions) as session:
            for n, email in enumerate(people):
                subject = ensure_person(session, email, START)
                program_id = None
                if n % 10 == 0:
                    program_id = session.scalars(
                        select(Program.id).where(Program.code == f"P{n // 10}")
                    ).one()
                case = Case(
                    kind=CaseKind.REPORT,
                    category="off-platform",
                    severity="high",
                    subject_id=subject.id,
                    program_id=program_id,
                    title="bench",
                    created_at=START,
                    updated_at=START,
                )
                session.add(case)
                session.flush()
                apply_sanction(
                    app.desk,
                    session,
                    case,
                    MODERATOR,
                    Step.STRIKE,
                    "Asked a student to pay outside the platform.",
                    START,
                )
        issued = time.perf_counter() - started

        timings = []
        with app.sessions() as session:
            for email in people:
                before = time.perf_counter()
                answer = enforcement_answer(session, settings.policy, email, START)
                timings.append((time.perf_counter() - before) * 1000)
                assert answer["restricted"], email
        timings.sort()
        median, p95 = statistics.median(timings), timings[int(len(timings) * 0.95)]

        sweep = EnforcementSweep(app.desk, app.sessions)
        later = START + timedelta(days=7 * 31)
        before = time.perf_counter()
        result = sweep(later)
        catch_up = time.perf_counter() - before
        before = time.perf_counter()
        again = sweep(later)
        rerun = time.perf_counter() - before
        print(f"{args.database}: {args.strikes} strikes ({programs} with a 5-member program)")
        print(f"  issuing the strikes with their notices, one transaction: {issued:.1f} s")
        print(f"  enforcement answer per person: median {median:.2f} ms, p95 {p95:.2f} ms")
        print(f"  catch-up sweep 7 months later: {catch_up:.1f} s ({result})")
        print(f"  the same sweep again: {rerun * 1000:.0f} ms ({again})")
        app.engine.dispose()


if __name__ == "__main__":
    main()
