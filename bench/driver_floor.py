"""The floor under a new report: its rows and commit through the bare sqlite3 driver, its emails.

Usage: .venv/bin/python bench/driver_floor.py [--messages 2000]

Writes what the pipeline writes for a new report (one dedupe lookup, the reporter, the case,
the inbound record and its attachments, an audit event, the lookup of the person the report
mentions, two outbox rows) with hand-written SQL on the desk's own schema, one durable commit
per message, and times separately what no driver can save: classifying the message and
rendering and composing the two emails. Their sum is about the best any Python pipeline on
this schema could do per report; compare it with `bench/pipeline_bench.py`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.imap_throughput import corpus
from bench.scratch import bench_settings, machine_reference
from casework.models import Party
from casework.notices import AutoSubmitted, Notice, make_message_id
from casework.rules import RULES
from intake.classify import ClassifyContext, classify
from intake.parse import ParsedMessage, parse_message
from outbound.outbox import Outbox
from scheduler.app import build_app

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    print(machine_reference())
    work = Path(tempfile.mkdtemp(prefix="safetydesk-floor-"))
    try:
        path = work / "floor.sqlite3"
        app = build_app(bench_settings(work, f"sqlite:///{path}"), migrate=True)
        app.engine.dispose()
        parsed = [
            parse_message(raw, max_bytes=10_000_000, max_attachment_bytes=10_000_000)
            for raw in corpus(args.messages)
        ]
        assert isinstance(app.desk.notices, Outbox)
        emails = time_emails(app.desk.notices, parsed)
        context = ClassifyContext(
            desk_address=app.desk.desk.address, desk_domain="ecareermentor.in"
        )
        started = time.process_time()
        for message in parsed:
            classify(message, context)
        classifying = (time.process_time() - started) / len(parsed)
        wall, cpu = time_rows(path, parsed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"rows and commit, bare sqlite3: {wall * 1e3:.2f} ms wall, {cpu * 1e3:.2f} ms CPU")
    print(f"classifying: {classifying * 1e3:.2f} ms CPU")
    print(f"rendering and composing the two emails: {emails * 1e3:.2f} ms CPU")
    floor = wall + classifying + emails
    print(f"floor per report: {floor * 1e3:.2f} ms (at most {1 / floor:.0f} reports/s on one core)")
    return 0


def time_emails(outbox: Outbox, parsed: list[ParsedMessage]) -> float:
    """CPU seconds per report for the acknowledgement and the moderators' email."""
    rules = [(rule.code, rule.title) for rule in RULES]
    started = time.process_time()
    for case_id, message in enumerate(parsed, start=1):
        ref = f"TS-{case_id}"
        acknowledgement = Notice(
            template="reporter/acknowledgement", recipient=message.from_address,
            party=Party.REPORTER, case_id=case_id, context={"ref": ref, "kind": "report"},
            in_reply_to=message.message_id, references=(message.message_id or "",),
            auto_submitted=AutoSubmitted.AUTO_REPLIED,
        )  # fmt: skip
        outbox.compose(acknowledgement, make_message_id("ecareermentor.in"), NOW)
        summary = {
            "ref": ref, "kind": "report", "status": "open", "category": None,
            "suggested_category": "off-platform", "reporter": message.from_address,
            "subject": None, "program": None, "assignee": None, "title": message.subject,
            "created_at": NOW,
        }  # fmt: skip
        context = {
            "ref": ref, "case": summary, "sender": message.from_address,
            "sender_name": message.from_name, "subject_line": message.subject, "date": NOW,
            "text": message.text, "truncated": False, "attachments": [],
            "reporter_history": {"as_reporter": 0, "as_subject": 0}, "mentioned": [],
            "mentioned_history": [], "rules": rules,
        }  # fmt: skip
        notice = Notice(
            template="moderator/new-case", recipient="asha.moderator@ecareermentor.in",
            party=Party.MODERATOR, case_id=case_id, context=context,
        )  # fmt: skip
        outbox.compose(notice, make_message_id("ecareermentor.in"), NOW)
    return (time.process_time() - started) / len(parsed)


def time_rows(path: Path, parsed: list[ParsedMessage]) -> tuple[float, float]:
    """Wall and CPU seconds per report for its rows, one durable commit each."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    now = NOW.isoformat(" ")
    email = b"x" * 2500  # about the size of a composed acknowledgement
    started, cpu_started = time.perf_counter(), time.process_time()
    for uid, message in enumerate(parsed, start=1):
        db.execute("BEGIN")
        db.execute(
            "SELECT id FROM inbound_messages WHERE (mailbox = ? AND uidvalidity = ? AND uid = ?)"
            " OR (disposition != 'duplicate' AND message_id = ?) ORDER BY id LIMIT 1",
            ("INBOX", 1, uid, message.message_id),
        ).fetchone()
        db.execute("SELECT id, name FROM people WHERE email = ?", (message.from_address,))
        person = db.execute(
            "INSERT INTO people (email, name, created_at) VALUES (?, ?, ?)",
            (message.from_address, message.from_name, now),
        ).lastrowid
        case = db.execute(
            "INSERT INTO cases (kind, status, suggested_category, detection, reporter_id, title,"
            " created_at, updated_at) VALUES ('report', 'open', 'off-platform',"
            " 'community_report', ?, ?, ?, ?)",
            (person, message.subject[:300], now, now),
        ).lastrowid
        inbound = db.execute(
            "INSERT INTO inbound_messages (received_at, mailbox, uidvalidity, uid, message_id,"
            " sha256, size, raw, truncated, from_address, from_name, to_addresses, subject, date,"
            " body_text, defects, disposition, reason, party, case_id) VALUES (?, 'INBOX', 1, ?,"
            " ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, '{}', 'new_case', 'report', 'reporter', ?)",
            (
                now, uid, message.message_id, message.sha256, len(message.raw), message.raw,
                message.from_address, message.from_name, ", ".join(message.to_addresses),
                message.subject, now, message.text, case,
            ),
        ).lastrowid  # fmt: skip
        db.executemany(
            "INSERT INTO attachments (message_id, filename, content_type, size, sha256)"
            " VALUES (?, ?, ?, ?, ?)",
            [(inbound, a.filename, a.content_type, a.size, a.sha256) for a in message.attachments],
        )
        db.execute(
            "INSERT INTO audit_events (at, actor, kind, case_id, person_id, detail)"
            " VALUES (?, ?, 'case.opened', ?, ?, ?)",
            (now, message.from_address, case, person, json.dumps({"message": inbound})),
        )
        db.execute("SELECT id, name FROM people WHERE email = ?", ("mentor1@example.com",))
        for recipient in (message.from_address, "asha.moderator@ecareermentor.in"):
            db.execute(
                "INSERT INTO outbox (created_at, case_id, party, template, message_id, recipient,"
                " subject, raw, status, attempts, next_attempt_at, last_error)"
                " VALUES (?, ?, 'reporter', 'reporter/acknowledgement', ?, ?, ?, ?, 'pending',"
                " 0, ?, '')",
                (now, case, make_message_id("ecareermentor.in"), recipient, "subject", email, now),
            )
        db.execute("COMMIT")
    wall = (time.perf_counter() - started) / len(parsed)
    cpu = (time.process_time() - cpu_started) / len(parsed)
    db.close()
    return wall, cpu


if __name__ == "__main__":
    raise SystemExit(main())
