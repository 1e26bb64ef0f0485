"""Helpers for the enforcement tests: cases, rosters, commands, outbox reading and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.db import transaction
from casework.models import (
    Case,
    CaseKind,
    Detection,
    Disposition,
    InboundMessage,
    OutboxMessage,
    Program,
)
from casework.people import ensure_person
from casework.programs import import_roster, read_roster
from scheduler.app import App
from scheduler.cli import main
from tests.conftest import MODERATORS
from tests.mail import parse

ASHA, RAVI = MODERATORS

ROSTER = """program,title,email,name,role
PY101,Python for Beginners,karan.mentor@example.com,Karan,mentor
PY101,Python for Beginners,meera.mentor@example.com,Meera,mentor
PY101,Python for Beginners,sunil.support@example.com,Sunil,support
DS200,Data Science,meera.mentor@example.com,Meera,mentor
"""


def load_roster(app: App, now: datetime, text: str = ROSTER) -> None:
    with transaction(app.sessions) as session:
        import_roster(session, read_roster(text), now)


def open_report(
    app: App,
    now: datetime,
    *,
    subject: str,
    reporter: str | None = "priya.student@example.com",
    rule: str | None = "off-platform",
    program: str | None = None,
    severity: str | None = None,
    detection: Detection = Detection.COMMUNITY_REPORT,
) -> int:
    """A report case as triage would leave it: subject, rule and program set."""
    with transaction(app.sessions) as session:
        reporter_row = ensure_person(session, reporter, now) if reporter else None
        subject_row = ensure_person(session, subject, now)
        program_id = None
        if program:
            program_id = session.scalars(select(Program.id).where(Program.code == program)).one()
        case = Case(
            kind=CaseKind.REPORT,
            category=rule,
            severity=severity,
            detection=detection,
            reporter_id=reporter_row.id if reporter_row else None,
            subject_id=subject_row.id,
            program_id=program_id,
            title="Mentor asked me to pay on WhatsApp",
            created_at=now,
            updated_at=now,
        )
        session.add(case)
        session.flush()
        return case.id


def command(app: App, case_id: int, call: Callable[[Session, Case], str]) -> str:
    """Run one service call in its own transaction, as the command block would."""
    with transaction(app.sessions) as session:
        return call(session, session.get_one(Case, case_id))


def subject_reply(app: App, case_id: int, sender: str, text: str, now: datetime) -> int:
    with transaction(app.sessions) as session:
        row = InboundMessage(
            received_at=now,
            message_id=f"<appeal-{case_id}-{now.timestamp()}@client.example>",
            sha256="0" * 64,
            size=len(text),
            raw=text.encode(),
            from_address=sender,
            subject=f"Re: [TS-{case_id}] A strike on your account",
            body_text=text,
            disposition=Disposition.FOLLOW_UP,
            case_id=case_id,
        )
        session.add(row)
        session.flush()
        return row.id


@dataclass(frozen=True)
class Sent:
    id: int
    recipient: str
    template: str
    subject: str
    text: str
    headers: dict[str, str]


# Reminders and digests to moderators run on their own clocks; enforcement tests leave them out.
HOUSEKEEPING = ("moderator/reminder", "moderator/digest")


def outbox(app: App, after: int = 0, *, housekeeping: bool = False) -> list[Sent]:
    """Outbox rows after id `after`, each parsed back from its raw bytes."""
    with app.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.id > after).order_by(OutboxMessage.id)
        if not housekeeping:
            query = query.where(OutboxMessage.template.not_in(HOUSEKEEPING))
        rows = session.scalars(query).all()
        result = []
        for row in rows:
            message = parse(row.raw)
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            text = " ".join(str(body.get_content()).split())  # type: ignore[attr-defined]
            result.append(
                Sent(
                    row.id,
                    row.recipient,
                    row.template,
                    str(message["Subject"]),
                    text,
                    {k: str(v) for k, v in message.items()},
                )
            )
        return result


def last_id(app: App) -> int:
    with app.sessions() as session:
        found = session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).first()
        return found or 0


def write_config(tmp_path: Path, url: str) -> Path:
    secret = tmp_path / "token-secret"
    if not secret.exists():
        secret.write_text("a-long-enough-test-secret-0123456789")
    path = tmp_path / "safetydesk.toml"
    path.write_text(
        f"""
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "{secret}"
[database]
url = "{url}"
[intake]
source = "maildir"
maildir = "{tmp_path / "in"}"
[outbound]
transport = "maildir"
maildir = "{tmp_path / "out"}"
[moderators]
addresses = {json.dumps(MODERATORS)}
require_authenticated = false
"""
    )
    return path


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), *args])
    return code, out.getvalue(), err.getvalue()


def enforcement(config: Path, email: str, now: datetime, *extra: str) -> dict[str, Any]:
    code, out, err = cli(config, "enforcement", email, "--json", "--now", now.isoformat(), *extra)
    assert code == 0, err
    answer: dict[str, Any] = json.loads(out)
    return answer


def run_once(config: Path, now: datetime) -> None:
    code, _, err = cli(config, "run", "--once", "--now", now.isoformat())
    assert code == 0, err
