"""The demo's moderator act: a moderator replies to the new-case email with commands."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from casework.clock import FixedClock
from scheduler.app import App
from scheduler.demo import MODERATORS, drop, narrate, reply_to_of, sample, sent_mail

# The demo config trusts mx.ecareermentor.in: this is what it adds to a moderator's real mail.
AUTHENTICATED = (
    "mx.ecareermentor.in; dkim=pass header.d=ecareermentor.in; "
    "dmarc=pass header.from=ecareermentor.in"
)


def moderator_commands(app: App, clock: FixedClock, inbox: Path) -> None:
    """Asha takes Priya's report, names the mentor and the rule, notes and answers the reporter."""
    moderator = MODERATORS[0]
    new_case = sent_mail(app, moderator, "moderator/new-case")
    print(f"\n3. {moderator} replies to the new-case email of TS-{new_case.case_id} with commands.")
    original = email.message_from_bytes(new_case.raw, policy=email.policy.default)
    assert isinstance(original, EmailMessage)
    body = original.get_body(preferencelist=("plain",))
    quoted = "\n".join(f"> {line}" for line in str(body.get_content() if body else "").splitlines())
    commands = (
        "/assign me\n"
        "/subject karan.mentor@example.com\n"
        "/category off-platform\n"
        "/note Second report of payment requests outside the platform;\n"
        "ask Priya for the UPI screenshot.\n"
        "/reply Thank you for telling us. We are looking into it and will write again\n"
        "when we have an outcome."
    )
    reply = sample(
        moderator,
        "Asha Menon",
        f"Re: {new_case.subject}",
        f"{commands}\n\n-- \nAsha Menon, T&S, eCareerMentor\n\n"
        f"On {clock.now():%a, %d %b %Y at %H:%M}, eCareerMentor Trust & Safety wrote:\n{quoted}\n",
        to=reply_to_of(new_case),
        headers={
            "In-Reply-To": new_case.message_id,
            "References": new_case.message_id,
            "Authentication-Results": AUTHENTICATED,
        },
    )
    for line in commands.splitlines():
        print(f"   | {line}")
    drop(inbox, reply.as_bytes())
    clock.move_to(clock.now() + timedelta(minutes=10))
    narrate(app, clock)
    transcript = sent_mail(app, moderator, "moderator/transcript", newest=True)
    text = email.message_from_bytes(transcript.raw, policy=email.policy.default)
    assert isinstance(text, EmailMessage)
    part = text.get_body(preferencelist=("plain",))
    print("\n   The transcript Asha received:")
    for line in str(part.get_content() if part else "").splitlines():
        print(f"   | {line}")
