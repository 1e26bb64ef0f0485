"""How long one outbox flush takes with a backlog of held mail (docs/hygiene.md quotes it).

Run from the repository root: `.venv/bin/python bench/held_backlog.py [COUNT]`.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.scratch import bench_settings
from casework.db import transaction
from casework.models import OutboxMessage, OutboxStatus, Party
from scheduler.app import build_app


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    folder = Path(tempfile.mkdtemp())
    settings = bench_settings(
        folder, f"sqlite:///{folder / 'desk.sqlite3'}", hygiene={"per_address_cap": 5}
    )
    app = build_app(settings, migrate=True)
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    with transaction(app.sessions) as session:
        for n in range(count):
            session.add(
                OutboxMessage(
                    created_at=now,
                    party=Party.REPORTER,
                    template="reporter/acknowledgement",
                    message_id=f"<{n:032x}@ecareermentor.in>",
                    recipient="victim@example.org",
                    subject="[TS-1] We received your report",
                    raw=b"Subject: x\r\n\r\nx\r\n",
                    status=OutboxStatus.PENDING,
                    next_attempt_at=now,
                )
            )
    for label, at in (
        ("first flush (holds them)", now),
        ("next flush", now + timedelta(minutes=1)),
        ("flush once the hour is up (5 go, the rest are held again)", now + timedelta(hours=2)),
        ("next flush", now + timedelta(hours=2, minutes=1)),
    ):
        start = time.perf_counter()
        app.deliverer.flush(at)
        print(f"{label}: {time.perf_counter() - start:.2f} s for {count} messages")
    with app.sessions() as session:
        held = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.HELD)
        )
    print(f"held: {held}")
    app.engine.dispose()


if __name__ == "__main__":
    main()
