"""Cost of the pipeline alone: N pre-parsed messages through `Pipeline.process_group`, no IMAP.

Usage: .venv/bin/python bench/pipeline_bench.py [--messages 1000] [--kind report|automated]
       [--database sqlite|postgres] [--moderators 1] [--messages-per-commit 25]
       [--statement-times]

Prints milliseconds per message (wall and CPU), the wall time per message of the first and the
last tenth of the groups (a cost that grows with the tables shows there; with
`--statement-times`, also by kind of statement, per group), then the SQL statements one
message costs, by kind of statement, counted on one more group after the clock has stopped.
Parsing, and what the pipeline reads from a parsed message alone (`intake.insights`), are
done before the clock starts, as the IMAP intake's parse helper does.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, event

from bench.imap_throughput import corpus
from bench.scratch import bench_settings, machine_reference, scratch_database
from intake.insights import gather_insights
from intake.parse import parse_message
from intake.pipeline import Pending, SourceRef
from scheduler.app import build_app
from scheduler.config import Settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--kind", choices=["report", "automated"], default="report")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--moderators", type=int, default=1, help="each new case emails every moderator"
    )
    parser.add_argument(
        "--messages-per-commit", type=int, default=25, help="as [intake.imap] messages_per_commit"
    )
    parser.add_argument(
        "--statement-times",
        action="store_true",
        help="also time each kind of statement (slows the run a little)",
    )
    args = parser.parse_args()
    print(machine_reference())

    work = Path(tempfile.mkdtemp(prefix="safetydesk-bench-"))
    try:
        with scratch_database(args.database, work) as url:
            moderators = [f"moderator{i}@ecareermentor.in" for i in range(args.moderators)]
            settings = bench_settings(
                work,
                url,
                intake={"source": "maildir", "maildir": "in"},
                moderators={"addresses": moderators},
            )
            measure(args, settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def measure(args: argparse.Namespace, settings: Settings) -> None:
    """Time `args.messages` messages through the pipeline and count their statements."""
    app = build_app(settings, migrate=True)
    size = args.messages_per_commit
    # One more group, after the timed ones, is run with the statements counted: a listener
    # on every statement would otherwise be part of what is timed.
    messages = corpus(args.messages + size, args.kind)
    parsed = [
        parse_message(
            raw,
            max_bytes=app.pipeline.limits.max_message_bytes,
            max_attachment_bytes=app.pipeline.limits.max_attachment_bytes,
        )
        for raw in messages
    ]
    context = app.pipeline.classify_context
    pending = [
        Pending(
            raw,
            SourceRef(mailbox="INBOX", uidvalidity=1, uid=uid),
            message,
            gather_insights(message, context),
        )
        for uid, (raw, message) in enumerate(zip(messages, parsed, strict=True), start=1)
    ]
    timed, counted = pending[: args.messages], pending[args.messages :]
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    groups: list[float] = []  # wall seconds of each group, to see whether the cost grows
    spent: list[dict[str, float]] = []  # with --statement-times: the same, by statement
    timer = StatementTimer(app.engine) if args.statement_times else None
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(timed), size):
        group_started = time.perf_counter()
        for _ in app.pipeline.process_group(timed[start : start + size], lambda: now):
            pass
        groups.append(time.perf_counter() - group_started)
        if timer is not None:
            spent.append(timer.take())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if timer is not None:
        timer.stop()
    n = len(timed)
    print(
        f"{args.database}, {n} {args.kind} messages, {args.moderators} moderator(s), "
        f"{size} per commit: "
        f"{elapsed / n * 1000:.2f} ms/message wall "
        f"({n / elapsed:.0f}/s), {cpu / n * 1000:.2f} ms/message CPU"
    )

    tenth = max(1, len(groups) // 10)
    first, last = (sum(part) / (tenth * size) * 1000 for part in (groups[:tenth], groups[-tenth:]))
    print(f"wall per message, first tenth of the groups {first:.2f} ms, last tenth {last:.2f} ms")
    if spent:
        print("time in cursor.execute per group, first tenth → last tenth:")
        early, late = (_add(part) for part in (spent[:tenth], spent[-tenth:]))
        for statement in sorted(early.keys() | late.keys()):
            before, after = (part.get(statement, 0.0) / tenth * 1000 for part in (early, late))
            print(f"  {before:6.2f} → {after:6.2f} ms  {statement}")

    statements: collections.Counter[str] = collections.Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements[" ".join(statement.split()[:3])] += 1

    event.listen(app.engine, "before_cursor_execute", count)
    for _ in app.pipeline.process_group(counted, lambda: now):
        pass
    event.remove(app.engine, "before_cursor_execute", count)
    print(f"statements per message (one more group of {len(counted)}, counted):", end=" ")
    print(f"{sum(statements.values()) / len(counted):.2f}")
    for statement, times in statements.most_common():
        print(f"  {times / len(counted):5.2f}  {statement}")
    app.engine.dispose()


def _add(times: list[dict[str, float]]) -> dict[str, float]:
    total: collections.defaultdict[str, float] = collections.defaultdict(float)
    for part in times:
        for statement, seconds in part.items():
            total[statement] += seconds
    return total


class StatementTimer:
    """The wall time `engine`'s statements spend in `cursor.execute`, by their first words."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._spent: collections.defaultdict[str, float] = collections.defaultdict(float)
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self._spent[" ".join(statement.split()[:3])] += time.perf_counter() - self._started

    def take(self) -> dict[str, float]:
        """The times since the last call, by statement; counting starts again."""
        spent, self._spent = self._spent, collections.defaultdict(float)
        return spent

    def stop(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)
        event.remove(self._engine, "after_cursor_execute", self._after)


if __name__ == "__main__":
    raise SystemExit(main())
