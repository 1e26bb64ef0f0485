"""`safetydesk run --once` and `safetydesk check` with an IMAP intake, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.db import make_engine, make_sessions
from casework.models import InboundMessage
from scheduler.cli import EX_TEMPFAIL, main
from tests.imap_servers import ImapServer
from tests.mail import make_mail
from tests.test_imap_crash import write_config


def test_run_once_reads_the_mailbox_and_exits(
    pymap_server: ImapServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, pymap_server)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    pymap_server.deliver(make_mail(message_id="<once@client.example>"))

    assert main(["--config", str(config), "run", "--once"]) == 0

    engine = make_engine(f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    with make_sessions(engine)() as session:
        assert session.scalars(select(InboundMessage.message_id)).all() == ["<once@client.example>"]
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1
    engine.dispose()
    assert pymap_server.message_ids("Processed") == ["<once@client.example>"]
    # The reporter's acknowledgement went out in the same run.
    assert len(list((tmp_path / "out" / "new").iterdir())) >= 1

    assert main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert "ok   imap" in out
    assert "login accepted" in out


def test_run_once_against_a_dead_server_is_a_temporary_failure(
    pymap_server: ImapServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, pymap_server)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    pymap_server.stop()

    assert main(["--config", str(config), "run", "--once"]) == EX_TEMPFAIL
    assert "IMAP" in capsys.readouterr().err

    assert main(["--config", str(config), "check"]) == 1
    assert "FAIL imap" in capsys.readouterr().out


def test_refused_logins_add_up_across_run_once_invocations(
    pymap_server: ImapServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `run --once` from cron: every run is a new process, yet the refusals must add up.
    config = write_config(tmp_path, pymap_server, login_alert_after=2)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    (tmp_path / "imap-password").write_text("the old password")

    assert main(["--config", str(config), "run", "--once"]) == EX_TEMPFAIL
    assert main(["--config", str(config), "run", "--once"]) == EX_TEMPFAIL
    capsys.readouterr()

    (tmp_path / "imap-password").write_text(pymap_server.password)
    assert main(["--config", str(config), "check"]) == 1
    assert "the worker reported 2 refused logins in a row" in capsys.readouterr().out

    assert main(["--config", str(config), "run", "--once"]) == 0
    assert main(["--config", str(config), "check"]) == 0
    assert "ok   imap" in capsys.readouterr().out
