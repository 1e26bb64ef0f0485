"""`safetydesk demo`: the whole flow on SQLite and local Maildirs, narrated as it happens."""

from __future__ import annotations

import email
import email.policy
import secrets
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from casework.clock import FixedClock, SystemClock
from casework.models import OutboxMessage
from scheduler.app import App, build_app
from scheduler.config import load_settings
from scheduler.views import list_cases
from scheduler.worker import run_once

MARKER = ".safetydesk-demo"
MODERATORS = ("asha.moderator@ecareermentor.in", "ravi.moderator@ecareermentor.in")

CONFIG = """\
# Written by `safetydesk demo`: the embedded default, SQLite and local Maildirs.
[desk]
address = "mentor4u@ecareermentor.in"
name = "eCareerMentor Trust & Safety"
token_secret_file = "token-secret"

[database]
url = "sqlite:///safetydesk.sqlite3"

[intake]
source = "maildir"
maildir = "maildir/in"

[outbound]
transport = "maildir"
maildir = "maildir/out"

[moderators]
addresses = ["asha.moderator@ecareermentor.in", "ravi.moderator@ecareermentor.in"]
trusted_authserv_ids = ["mx.ecareermentor.in"]

[logging]
level = "WARNING"
"""


def sample(
    sender: str,
    name: str,
    subject: str,
    body: str,
    *,
    to: str = "eCareerMentor Trust & Safety <mentor4u@ecareermentor.in>",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"{name} <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@demo.example>"
    message["Date"] = email.utils.format_datetime(SystemClock().now())
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body)
    return message


REPORTS = (
    sample(
        "priya.student@example.com",
        "Priya Sharma",
        "Mentor asked me to pay him on WhatsApp",
        "Hello,\n\nI want to report my mentor Karan Mehta (karan.mentor@example.com) in the\n"
        "'Data Analyst Career Track' program. In our session on Tuesday he asked me to move to\n"
        "WhatsApp and pay him directly for extra sessions instead of booking them on\n"
        "eCareerMentor. He said it would be cheaper that way.\n\nThanks,\nPriya",
    ),
    sample(
        "meera.mentor@example.com",
        "Meera Iyer",
        "Student asking for free coupons for reviews",
        "Hi team,\n\nA student, rohit.s@example.com, keeps messaging me asking for free coupons.\n"
        "He says he will leave a 5-star review in exchange. I have said no twice.\n\nMeera",
    ),
    sample(
        "arjun.mentor@example.com",
        "Arjun Rao",
        "Question about sharing my LinkedIn",
        "Hello, is it allowed to share my LinkedIn profile with my students so they can follow\n"
        "my posts? I don't want to break any rule.\n\nArjun",
    ),
    sample(
        "neha.support@example.com",
        "Neha Kapoor",
        "Automatic reply: Out of office",
        "I am out of the office until Monday and will reply when I am back.",
        headers={"Auto-Submitted": "auto-replied"},
    ),
)


def run_demo(folder: Path) -> int:
    """Lay out a fresh demo folder, push sample mail through the worker, say what happened."""
    if folder.exists() and not (folder / MARKER).exists() and any(folder.iterdir()):
        print(f"{folder} exists and is not a SafetyDesk demo folder; choose another with --dir")
        return 1
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `safetydesk demo`; safe to delete\n")
    (folder / "token-secret").write_text(secrets.token_hex(32) + "\n")
    (folder / "safetydesk.toml").write_text(CONFIG)
    settings = load_settings(folder / "safetydesk.toml")
    app = build_app(settings, migrate=True)
    clock = FixedClock(SystemClock().now())
    inbox = settings.intake.maildir

    print(f"SafetyDesk demo in {folder.resolve()}")
    print(f"  database: {settings.database.url}")
    print(f"  mail in:  {inbox}/new   mail out: {settings.outbound.maildir}/new\n")

    print("1. Four messages arrive: three from people, one automatic out-of-office reply.")
    for message in REPORTS:
        drop(inbox, message.as_bytes())
    narrate(app, clock)

    print("\n2. The student replies to her acknowledgement with more detail.")
    ack = sent_mail(app, "priya.student@example.com")
    reply = sample(
        "priya.student@example.com",
        "Priya Sharma",
        f"Re: {ack.subject}",
        "He also sent me his UPI id in the chat. I have a screenshot if you need it.",
        to=reply_to_of(ack),
        headers={"In-Reply-To": ack.message_id, "References": ack.message_id},
    )
    drop(inbox, reply.as_bytes())
    clock.move_to(clock.now() + timedelta(minutes=5))
    narrate(app, clock)

    for act in ACTS:
        act(app, clock, inbox)

    print("\nCases now:")
    with app.sessions() as session:
        for case in list_cases(session):
            print(
                f"  {case['ref']:6} {case['kind']:9} {case['status']:7} "
                f"reporter={case['reporter']} suggested rule={case['suggested_category'] or '-'}"
            )
    print("\nWhere to look:")
    print(f"  every email the desk sent:  {settings.outbound.maildir}/new/")
    print(f"  the cases:                  safetydesk --config {folder}/safetydesk.toml cases list")
    print(
        f"  one case in full:           safetydesk --config {folder}/safetydesk.toml"
        " cases show TS-1"
    )
    return 0


# Later acts (moderator commands, sanctions, time passing) append themselves here.
ACTS: list[Callable[[App, FixedClock, Path], None]] = []


def drop(maildir: Path, raw: bytes) -> None:
    """Deliver `raw` into a Maildir the way an MTA does: write to tmp/, rename into new/."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now().timestamp():.6f}.{secrets.token_hex(4)}.demo"
    (maildir / "tmp" / name).write_bytes(raw)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


# Reminders and digests to moderators; `quiet` narration counts them instead of listing them.
HOUSEKEEPING = ("moderator/reminder", "moderator/digest")


def narrate(app: App, clock: FixedClock, *, quiet: bool = False) -> None:
    """Run the worker once and print what it did: messages in, mail out."""
    with app.sessions() as session:
        before = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
    results = app.poll(clock.now())
    for result in results:
        what = f"case TS-{result.case_id}" if result.case_id else "no case"
        print(
            f"   in:  {result.disposition.value if result.disposition else result.outcome.value:10}"
            f" -> {what} ({result.reason})"
        )
    run_once(app, clock)
    with app.sessions() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if before is not None:
            query = query.where(OutboxMessage.id > before)
        skipped = 0
        for row in session.scalars(query):
            if quiet and row.template in HOUSEKEEPING:
                skipped += 1
                continue
            print(f"   out: {row.status.value:7} to {row.recipient:34} {row.subject}")
        if skipped:
            print(f"   (and {skipped} reminder(s) and digest(s) to the moderators)")


def sent_mail(
    app: App, recipient: str, template: str | None = None, *, newest: bool = False
) -> OutboxMessage:
    """The first (or newest) email the desk queued for `recipient`, of `template` if given."""
    with app.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.recipient == recipient)
        if template is not None:
            query = query.where(OutboxMessage.template == template)
        order = OutboxMessage.id.desc() if newest else OutboxMessage.id
        row = session.scalars(query.order_by(order)).first()
    if row is None:
        raise LookupError(f"no {template or ''} mail was sent to {recipient}".replace("  ", " "))
    return row


def reply_to_of(row: OutboxMessage) -> str:
    parsed = email.message_from_bytes(row.raw, policy=email.policy.default)
    return str(parsed["Reply-To"])


from scheduler.demo_commands import moderator_commands  # noqa: E402  (the act uses the helpers above)
from scheduler.demo_enforcement import (  # noqa: E402
    a_month_later,
    strike_after_another_report,
    warn_the_mentor,
)

ACTS.append(moderator_commands)
ACTS.extend([warn_the_mentor, strike_after_another_report, a_month_later])
