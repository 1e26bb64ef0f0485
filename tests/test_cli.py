"""The command line as operators and MTAs use it: exit codes, tables and JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.cli import EX_CONFIG, EX_TEMPFAIL, main
from tests.mail import make_mail, parse

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, url: str | None = None) -> Path:
    (tmp_path / "secret").write_text("s" * 32)
    config = tmp_path / "safetydesk.toml"
    config.write_text(
        f"""
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "secret"
[database]
url = "{url or "sqlite:///desk.sqlite3"}"
[intake]
maildir = "in"
[outbound]
transport = "maildir"
maildir = "out"
[moderators]
addresses = ["asha.moderator@ecareermentor.in"]
trusted_authserv_ids = ["mx.ecareermentor.in"]
[schedule]
poll_interval = "PT1S"
outbox_interval = "PT1S"
[logging]
level = "INFO"
"""
    )
    return config


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ingest_cases_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    assert run_cli(capsys, "--config", config, "db", "upgrade")[0] == 0
    report = tmp_path / "report.eml"
    report.write_bytes(make_mail(name="Priya Sharma"))
    code, out, _ = run_cli(
        capsys, "--config", config, "ingest", str(report), "--now", "2027-01-04T09:00:00Z"
    )
    assert code == 0 and "processed TS-1" in out

    code, out, _ = run_cli(capsys, "--config", config, "cases", "list", "--json")
    cases = json.loads(out)
    assert code == 0 and len(cases) == 1
    assert {
        "ref",
        "kind",
        "status",
        "category",
        "reporter",
        "subject",
        "program",
        "created_at",
    } <= set(cases[0])
    assert cases[0]["ref"] == "TS-1" and cases[0]["reporter"] == "priya.student@example.com"
    assert cases[0]["created_at"].startswith("2027-01-04T09:00")

    code, out, _ = run_cli(capsys, "--config", config, "cases", "show", "TS-1", "--json")
    shown = json.loads(out)
    assert {"messages", "events", "actions"} <= set(shown)
    directions = [m["direction"] for m in shown["messages"]]
    assert directions.count("in") == 1 and directions.count("out") == 2
    assert {"direction", "from", "to", "subject", "date"} <= set(shown["messages"][0])
    assert shown["events"][0]["kind"] == "case.opened"

    code, out, _ = run_cli(capsys, "--config", config, "cases", "list")
    assert "TS-1" in out and "REF" in out
    code, _, err = run_cli(capsys, "--config", config, "cases", "show", "TS-99")
    assert code == 1 and "no case TS-99" in err

    code, out, _ = run_cli(capsys, "--config", config, "outbox", "list", "--json")
    assert [row["status"] for row in json.loads(out)] == ["pending", "pending"]


def test_ingest_reads_stdin_like_an_mta_pipe(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {**os.environ, "SAFETYDESK_CONFIG": str(config)}
    cli = [sys.executable, "-m", "scheduler.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, cwd=ROOT, capture_output=True)
    done = subprocess.run(
        [*cli, "ingest"], input=make_mail(), env=env, cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert b"processed TS-1" in done.stdout


def test_ingest_asks_the_mta_to_retry_when_the_database_is_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.eml"
    report.write_bytes(make_mail())
    unmigrated = str(write_config(tmp_path))
    code, _, err = run_cli(capsys, "--config", unmigrated, "ingest", str(report))
    assert code == EX_TEMPFAIL and "db upgrade" in err
    (tmp_path / "away").mkdir()
    away = write_config(tmp_path / "away", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    code, _, err = run_cli(capsys, "--config", str(away), "ingest", str(report))
    assert code == EX_TEMPFAIL and "database" in err


def test_a_config_error_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[intake]", "[intake]\nsorce = 'imap'"))
    code, _, err = run_cli(capsys, "--config", str(config), "cases", "list")
    assert code == EX_CONFIG and "[intake] sorce: unknown key" in err


def test_run_once_with_a_maildir_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    run_cli(capsys, "--config", config, "db", "upgrade")
    new = tmp_path / "in" / "new"
    new.mkdir(parents=True)
    (new / "1.eml").write_bytes(make_mail())
    code, _, _ = run_cli(capsys, "--config", config, "run", "--once", "--now", "2027-01-04T09:00Z")
    assert code == 0
    assert list(new.iterdir()) == []
    assert len(list((tmp_path / "in" / "cur").iterdir())) == 1
    subjects = sorted(
        parse(path.read_bytes())["Subject"] for path in (tmp_path / "out" / "new").iterdir()
    )
    # The acknowledgement, the new-case email, and (09:00 is past digest_hour) the daily digest.
    assert len(subjects) == 3
    assert any(s.endswith("We received your report") for s in subjects)
    assert any("New report" in s for s in subjects)
    code, out, _ = run_cli(capsys, "--config", config, "check")
    assert code == 0 and "ok   database" in out


def test_check_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.smtp_server import free_port

    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace('transport = "maildir"', 'transport = "smtp"')
        + f'\n[outbound.smtp]\nhost = "127.0.0.1"\nport = {free_port()}\ntls = "none"\n'
    )
    code, out, _ = run_cli(capsys, "--config", str(config), "check")
    assert code == 1
    assert "FAIL database" in out and "db upgrade" in out
    assert "FAIL smtp" in out


def test_the_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {**os.environ, "SAFETYDESK_CONFIG": str(config)}
    cli = [sys.executable, "-m", "scheduler.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, cwd=ROOT, capture_output=True)
    new = tmp_path / "in" / "new"
    new.mkdir(parents=True)
    (new / "1.eml").write_bytes(make_mail())
    worker = subprocess.Popen([*cli, "run"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert worker.stderr is not None
    for line in worker.stderr:
        if "sent outbox #2" in line:
            break
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    rest = worker.stderr.read()
    assert "worker stopped" in rest


def test_demo_shows_reports_becoming_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "demo", "--dir", str(tmp_path / "demo"))
    assert code == 0
    assert "-> case TS-1" in out and "We received your report" in out
    assert "automated" in out
    sent = list((tmp_path / "demo" / "maildir" / "out" / "new").iterdir())
    assert len(sent) >= 9
    config = str(tmp_path / "demo" / "safetydesk.toml")
    code, out, _ = run_cli(capsys, "--config", config, "cases", "list", "--json")
    assert len(json.loads(out)) == 4  # the three reports and the later one the strike came from
    # The demo's clock runs ahead of the real one: ask about a moment after its last act.
    code, out, _ = run_cli(
        capsys, "--config", config, "enforcement", "karan.mentor@example.com", "--json",
        "--now", "2100-01-01T00:00:00+00:00",
    )  # fmt: skip
    answer = json.loads(out)
    assert answer["restricted"] is False
    assert answer["standing"]["lifetime_strikes"] == 1
    # Running it again starts afresh instead of piling up.
    assert run_cli(capsys, "demo", "--dir", str(tmp_path / "demo"))[0] == 0
    refused = tmp_path / "mine"
    refused.mkdir()
    (refused / "precious.txt").write_text("keep")
    code, out, _ = run_cli(capsys, "demo", "--dir", str(refused))
    assert code == 1 and (refused / "precious.txt").exists()
