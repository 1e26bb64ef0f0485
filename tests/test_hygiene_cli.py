"""`safetydesk quarantine list|show|replay` end to end, and held mail in `safetydesk check`."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from casework.models import AuditEvent, Case, QuarantineEntry, QuarantineStatus
from scheduler.cli import main
from tests.mail import make_mail

NOW = "2027-01-04T09:00:00Z"


def write_config(tmp_path: Path, *, hygiene: str = "") -> Path:
    """A config file as an operator would write it, on SQLite and local Maildirs."""
    secret = tmp_path / "token-secret"
    secret.write_text(secrets.token_hex(32))
    config = tmp_path / "safetydesk.toml"
    config.write_text(
        f"""
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "{secret}"

[database]
url = "sqlite:///{tmp_path / "desk.sqlite3"}"

[intake]
source = "maildir"
maildir = "{tmp_path / "in"}"

[outbound]
transport = "maildir"
maildir = "{tmp_path / "out"}"

[moderators]
addresses = ["asha.moderator@ecareermentor.in"]
require_authenticated = false

[hygiene]
{hygiene}
"""
    )
    return config


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(config), *args])
    return code, capsys.readouterr().out


def test_a_quarantined_message_is_replayed_after_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A header block over the limit is refused into quarantine...
    config = write_config(tmp_path, hygiene="max_header_bytes = 2000\n")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    raw = make_mail(headers={f"X-Filler-{n}": "x" * 60 for n in range(60)})
    message = tmp_path / "big-headers.eml"
    message.write_bytes(raw)
    code, out = run(config, capsys, "ingest", str(message), "--now", NOW, "--json")
    assert code == 0
    assert json.loads(out)[0]["outcome"] == "quarantined"

    code, out = run(config, capsys, "quarantine", "list", "--json")
    [entry] = json.loads(out)
    assert entry["status"] == "held"
    assert "max_header_bytes" in entry["reason"]
    code, out = run(config, capsys, "quarantine", "show", str(entry["id"]), "--json")
    assert code == 0 and "max_header_bytes" in json.loads(out)["reason"]
    code, out = run(config, capsys, "quarantine", "show", str(entry["id"]), "--raw")
    assert out.encode() == raw

    # ...replaying before the fix keeps one entry, with the newest reason...
    code, out = run(config, capsys, "quarantine", "replay", str(entry["id"]), "--now", NOW)
    assert code == 1
    code, out = run(config, capsys, "quarantine", "list", "--json")
    assert [e["status"] for e in json.loads(out)] == ["held"]

    # ...and after the operator raises the limit, the replay opens the case.
    config = write_config(tmp_path, hygiene="max_header_bytes = 65536\n")
    code, out = run(config, capsys, "quarantine", "replay", str(entry["id"]), "--now", NOW)
    assert code == 0, out
    assert "TS-1" in out
    code, out = run(config, capsys, "quarantine", "list", "--json")
    [replayed] = json.loads(out)
    assert replayed["status"] == "replayed"

    from scheduler.app import build_app
    from scheduler.config import load_settings

    app = build_app(load_settings(config))
    with app.sessions() as session:
        stored = session.scalars(select(QuarantineEntry)).one()
        assert stored.status is QuarantineStatus.REPLAYED and stored.replayed_at is not None
        # The audit log names only entries that exist: the failed replay updated this one.
        quarantined = session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "message.quarantined")
        ).all()
        assert [e.detail["quarantine"] for e in quarantined] == [stored.id, stored.id]
        assert session.scalars(select(Case)).one().ref == "TS-1"
    app.engine.dispose()

    # replaying a replayed entry again does nothing twice
    code, out = run(config, capsys, "quarantine", "replay", str(entry["id"]), "--now", NOW)
    assert code == 0 and "duplicate" in out


def test_check_reports_held_mail_and_suppressions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hygiene="per_address_cap = 1\n")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    for n in range(3):
        message = tmp_path / f"m{n}.eml"
        message.write_bytes(make_mail(subject=f"report {n}"))
        assert main(["--config", str(config), "ingest", str(message), "--now", NOW]) == 0
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 0
    _, out = run(config, capsys, "check", "--json")
    hygiene = next(r for r in json.loads(out) if r["name"] == "hygiene")
    assert hygiene["ok"] is True
    assert "2 held (address-cap 2)" in hygiene["detail"]
    assert "0 suppressed" in hygiene["detail"]


def test_outbox_retry_held_has_the_gate_look_again_after_a_cap_is_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hygiene="per_address_cap = 1")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    start = "2027-01-04T09:00:00Z"
    for n in range(3):
        (tmp_path / f"r{n}.eml").write_bytes(make_mail(subject=f"Report {n}"))
        assert run(config, capsys, "ingest", str(tmp_path / f"r{n}.eml"), "--now", start)[0] == 0
    assert run(config, capsys, "run", "--once", "--now", start)[0] == 0
    code, out = run(config, capsys, "outbox", "list", "--status", "held", "--json")
    assert len(json.loads(out)) == 2

    # The operator raises the cap; held mail would wait out the hour without being told.
    text = config.read_text().replace("per_address_cap = 1", "per_address_cap = 10")
    config.write_text(text)
    soon = "2027-01-04T09:05:00Z"
    assert run(config, capsys, "run", "--once", "--now", soon)[0] == 0
    assert (
        len(json.loads(run(config, capsys, "outbox", "list", "--status", "held", "--json")[1])) == 2
    )
    code, out = run(config, capsys, "outbox", "retry", "--held", "--now", soon)
    assert (code, out.strip()) == (0, "2 held message(s) to be looked at again")
    assert run(config, capsys, "run", "--once", "--now", soon)[0] == 0
    code, out = run(config, capsys, "outbox", "list", "--status", "held", "--json")
    assert json.loads(out) == []
    sent = json.loads(run(config, capsys, "outbox", "list", "--status", "sent", "--json")[1])
    assert sum(1 for row in sent if row["to"] == "priya.student@example.com") == 3
