"""A desk driven only by mail and the CLI: drop messages, `run --once --now`, read the Maildir."""

from __future__ import annotations

import email.policy
import email.utils
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from casework.models import OutboxMessage
from scheduler.app import App, build_app
from scheduler.config import load_settings
from tests.conftest import MODERATORS
from tests.enforcement_kit import cli
from tests.mail import make_mail

HOUSEKEEPING = ("moderator/reminder", "moderator/digest")
TRUSTED = "mx.ecareermentor.in"
PASS = f"{TRUSTED}; dkim=pass header.d=ecareermentor.in; dmarc=pass header.from=ecareermentor.in"


@dataclass(frozen=True)
class Mail:
    """One message the desk delivered, read back from the outbound Maildir."""

    outbox_id: int
    recipient: str
    template: str
    subject: str
    text: str  # the plain-text body, whitespace collapsed to single spaces
    body: str  # the plain-text body as written
    reply_to: str
    message_id: str
    raw: bytes


@dataclass
class MailDesk:
    """A configured desk in `folder`: mail goes in through its Maildir, comes out of another."""

    folder: Path
    config: Path
    app: App
    seen: set[str] = field(default_factory=set)
    history: list[Mail] = field(default_factory=list)  # everything delivered so far

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.app.sessions

    def import_programs(self, csv: str) -> str:
        path = self.folder / f"roster-{secrets.token_hex(3)}.csv"
        path.write_text(csv)
        code, out, err = cli(self.config, "programs", "import", str(path))
        assert code == 0, err
        return out

    def send(self, raw: bytes, now: datetime) -> list[Mail]:
        """Deliver `raw` to the mailbox, run the worker once at `now`, return what went out."""
        drop(self.folder / "in", dated(raw, now))
        return self.run(now)

    def run(self, now: datetime) -> list[Mail]:
        code, _, err = cli(self.config, "run", "--once", "--now", now.isoformat())
        assert code == 0, err
        return self.delivered()

    def delivered(self) -> list[Mail]:
        """Messages written to the outbound Maildir since the last look, in outbox order."""
        new = self.folder / "out" / "new"
        fresh = sorted(p for p in new.iterdir() if p.name not in self.seen) if new.exists() else []
        self.seen.update(p.name for p in fresh)
        found = [read_mail(self.sessions, p.read_bytes()) for p in fresh]
        # Reminders and the digest run on their own clocks; these stories leave them out.
        kept = sorted(
            (mail for mail in found if mail.template not in HOUSEKEEPING),
            key=lambda mail: mail.outbox_id,
        )
        self.history.extend(kept)
        return kept

    def enforcement(self, address: str, now: datetime, *extra: str) -> dict[str, Any]:
        code, out, err = cli(
            self.config, "enforcement", address, "--json", "--now", now.isoformat(), *extra
        )
        assert code == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer


def open_desk(folder: Path, url: str, *, authenticated: bool = True, **policy: Any) -> MailDesk:
    """Write a config like an operator would, upgrade the database and build the app for reads."""
    (folder / "token-secret").write_text(secrets.token_hex(32))
    policy_lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in policy.items())
    config = folder / "safetydesk.toml"
    config.write_text(
        f"""
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "{folder / "token-secret"}"
[database]
url = "{url}"
[intake]
source = "maildir"
maildir = "{folder / "in"}"
[outbound]
transport = "maildir"
maildir = "{folder / "out"}"
[moderators]
addresses = {json.dumps(MODERATORS)}
require_authenticated = {"true" if authenticated else "false"}
trusted_authserv_ids = ["{TRUSTED}"]
[policy]
{policy_lines}"""
    )
    code, _, err = cli(config, "db", "upgrade")
    assert code == 0, err
    for sub in ("tmp", "new", "cur"):
        (folder / "in" / sub).mkdir(parents=True, exist_ok=True)
    return MailDesk(folder, config, build_app(load_settings(config)))


def dated(raw: bytes, now: datetime) -> bytes:
    """The message as sent at `now`: its Date header says so (transcripts quote it)."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    lines = [
        b"Date: " + format_date(now).encode() if line.lower().startswith(b"date:") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines) + separator + body


def drop(maildir: Path, raw: bytes) -> None:
    """Deliver into a Maildir as an MTA does: write in tmp/, rename into new/."""
    name = f"{secrets.token_hex(8)}.test"
    (maildir / "tmp" / name).write_bytes(raw)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


def read_mail(sessions: sessionmaker[Session], raw: bytes) -> Mail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    message_id = str(message["Message-ID"])
    with sessions() as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        ).one()
        outbox_id, template = row.id, row.template
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    body = str(part.get_content()).replace("\r\n", "\n")
    reply_to = message["Reply-To"]
    return Mail(
        outbox_id=outbox_id,
        recipient=str(message["To"].addresses[0].addr_spec),
        template=template,
        subject=str(message["Subject"]),
        text=" ".join(body.split()),
        body=body,
        reply_to=str(reply_to.addresses[0].addr_spec) if reply_to else "",
        message_id=message_id,
        raw=raw,
    )


def reply(
    to: Mail,
    sender: str,
    text: str,
    *,
    auth: bool = True,
    date: datetime | None = None,
) -> bytes:
    """A reply to `to` from `sender`, typed above the quoted original, as a mail client sends it."""
    quoted = "\n".join(f"> {line}" for line in to.body.splitlines())
    body = f"{text}\n\nOn Mon, 4 Jan 2027 at 09:00, Trust & Safety wrote:\n{quoted}\n"
    raw = make_mail(
        sender,
        f"Re: {to.subject}",
        body,
        to=to.reply_to,
        in_reply_to=to.message_id,
        date=date,
    )
    # Our receiving server puts its Authentication-Results on top (RFC 8601 section 5).
    return (f"Authentication-Results: {PASS}\r\n".encode() if auth else b"") + raw


def report(sender: str, subject: str, body: str, *, name: str = "", date: datetime) -> bytes:
    return make_mail(sender, subject, body, name=name, date=date)


def only(mails: list[Mail], template: str, recipient: str | None = None) -> Mail:
    found = [m for m in mails if m.template == template and recipient in (None, m.recipient)]
    assert len(found) == 1, [(m.template, m.recipient) for m in mails]
    return found[0]


def sent_to(mails: list[Mail]) -> list[tuple[str, str]]:
    return sorted((m.recipient, m.template) for m in mails)


def format_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment)
