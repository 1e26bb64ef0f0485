"""The demo's enforcement acts: a warning, a strike with program restrictions, a month passing."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.db import transaction
from casework.models import Case, OutboxMessage, Person, Restriction, RestrictionStatus
from casework.programs import import_roster, read_roster
from scheduler.app import App
from scheduler.demo import MODERATORS, drop, narrate, reply_to_of, sample, sent_mail
from scheduler.demo_commands import AUTHENTICATED

ROSTER = """\
program,title,email,name,role
DATA-101,Data Analyst Career Track,karan.mentor@example.com,Karan Mehta,mentor
DATA-101,Data Analyst Career Track,divya.mentor@example.com,Divya Nair,mentor
DATA-101,Data Analyst Career Track,neha.support@example.com,Neha Kapoor,support
"""
KARAN = "karan.mentor@example.com"


def warn_the_mentor(app: App, clock: FixedClock, inbox: Path) -> None:
    """The roster is imported; Asha names the program and warns Karan on TS-1."""
    with transaction(app.sessions) as session:
        summary = import_roster(session, read_roster(ROSTER), clock.now())
    print(f"\n4. The operator imports the program roster (safetydesk programs import): {summary}.")
    case = _first_case_mail(app, MODERATORS[0], "priya.student@example.com")
    print(f"   {MODERATORS[0]} replies on {_ref(case)} again:")
    _command(
        app,
        clock,
        inbox,
        case,
        "/program DATA-101\n/warn In a session on Tuesday you asked a student to pay you directly\n"
        "on WhatsApp for extra sessions instead of booking them on eCareerMentor.",
    )
    warning = sent_mail(app, KARAN, "subject/warning", newest=True)
    print("\n   The warning Karan received states (among the other required elements):")
    _quote(warning, ("Decision:", "How long:", "Your standing:", "To give context"))
    outcome = sent_mail(app, "priya.student@example.com", "reporter/outcome", newest=True)
    print("   Priya is told the outcome, without any detail of Karan's sanction:")
    _quote(outcome, ("Outcome:",))


def strike_after_another_report(app: App, clock: FixedClock, inbox: Path) -> None:
    """Two weeks later a second student reports Karan; /escalate gives him a strike."""
    clock.move_to(clock.now() + timedelta(days=14))
    print("\n5. Two weeks later another student reports Karan for the same thing.")
    drop(
        inbox,
        sample(
            "rahul.student@example.com",
            "Rahul Verma",
            "Mentor sent me his UPI id",
            "Hi, my mentor Karan (karan.mentor@example.com) in Data Analyst Career Track sent me\n"
            "his UPI id and said I should pay him there for the next module.\n\nRahul",
        ).as_bytes(),
    )
    narrate(app, clock, quiet=True)
    case = _first_case_mail(app, MODERATORS[0], "rahul.student@example.com")
    print(f"   {MODERATORS[0]} replies on {_ref(case)}; the next step on the ladder is a strike:")
    _command(
        app,
        clock,
        inbox,
        case,
        f"/assign me\n/subject {KARAN}\n/category off-platform\n/program DATA-101\n"
        "/escalate You sent a student your UPI id and asked to be paid there for a module.",
    )
    strike = sent_mail(app, KARAN, "subject/strike", newest=True)
    print("\n   Karan's strike notice:")
    _quote(strike, ("Decision:", "How long:"))
    member = sent_mail(app, "divya.mentor@example.com", "member/program-restriction", newest=True)
    print("   The program's other mentor and support staff get a program restriction:")
    _quote(member, ("This is a program restriction", "Scope:"))


def a_month_later(app: App, clock: FixedClock, inbox: Path) -> None:
    """The worker runs after the suspension's month: the features come back by themselves."""
    with app.sessions() as session:
        until = session.scalar(
            select(func.max(Restriction.until)).where(
                Restriction.status == RestrictionStatus.ACTIVE
            )
        )
    if until is None:
        raise LookupError("the demo's strike left no active restriction")
    later = FixedClock(until + timedelta(minutes=1))
    print(
        f"\n6. A month later ({later.now():%d %B %Y}), `safetydesk run --once` ends the suspension"
        " and the program restrictions:"
    )
    narrate(app, later, quiet=True)
    clock.move_to(later.now())


def _command(app: App, clock: FixedClock, inbox: Path, case: OutboxMessage, commands: str) -> None:
    """A moderator's authenticated reply to `case`, typed above the quoted original."""
    reply = sample(
        MODERATORS[0],
        "Asha Menon",
        f"Re: {case.subject}",
        f"{commands}\n\n-- \nAsha Menon, T&S, eCareerMentor\n",
        to=reply_to_of(case),
        headers={
            "In-Reply-To": case.message_id,
            "References": case.message_id,
            "Authentication-Results": AUTHENTICATED,
        },
    )
    for line in commands.splitlines():
        print(f"   | {line}")
    drop(inbox, reply.as_bytes())
    clock.move_to(clock.now() + timedelta(minutes=10))
    narrate(app, clock, quiet=True)


def _quote(row: OutboxMessage, phrases: tuple[str, ...]) -> None:
    """From each phrase of a sent notice to the end of its paragraph, one line each."""
    message = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    text = str(part.get_content() if part else "").replace("\r\n", "\n")
    for paragraph in text.split("\n\n"):
        flat = " ".join(paragraph.split())
        for phrase in phrases:
            if phrase in flat:
                found = flat[flat.index(phrase) :]
                print(f"   > {found[:160]}{'...' if len(found) > 160 else ''}")


def _ref(row: OutboxMessage) -> str:
    return f"TS-{row.case_id}"


def _first_case_mail(app: App, moderator: str, reporter: str) -> OutboxMessage:
    """The new-case email `moderator` got for the latest case `reporter` opened."""
    with app.sessions() as session:
        row = session.scalars(
            select(OutboxMessage)
            .join(Case, Case.id == OutboxMessage.case_id)
            .join(Person, Person.id == Case.reporter_id)
            .where(OutboxMessage.recipient == moderator)
            .where(OutboxMessage.template == "moderator/new-case")
            .where(Person.email == reporter)
            .order_by(OutboxMessage.id.desc())
        ).first()
    if row is None:
        raise LookupError(f"no new-case email to {moderator} for a report by {reporter}")
    return row
