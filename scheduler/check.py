"""`safetydesk check`: each external dependency tried in turn, with exactly what is wrong."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import text

from casework.db import is_current, make_engine
from outbound.delivery import SendError
from scheduler.config import IntakeSource, Settings, Transport


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_database(settings: Settings) -> CheckResult:
    engine = make_engine(settings.database.url)
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if not is_current(engine):
            return CheckResult(
                "database", False, f"{url}: schema is behind; run `safetydesk db upgrade`"
            )
        return CheckResult("database", True, f"{url}: reachable, schema current")
    except Exception as error:
        return CheckResult("database", False, f"{url}: {type(error).__name__}: {error}")
    finally:
        engine.dispose()


def check_maildir(name: str, path: Path) -> CheckResult:
    try:
        for sub in ("new", "cur", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if not os.access(path / "tmp", os.W_OK):
            return CheckResult(name, False, f"{path}: not writable")
        return CheckResult(name, True, f"{path}: Maildir ready")
    except OSError as error:
        return CheckResult(name, False, f"{path}: {error.strerror}")


def check_smtp(settings: Settings) -> CheckResult:
    from scheduler.app import smtp_transport

    smtp = settings.outbound.smtp
    where = f"{smtp.host}:{smtp.port} ({smtp.tls.value})"
    try:
        return CheckResult("smtp", True, f"{where}: {smtp_transport(smtp).probe()}")
    except SendError as error:
        return CheckResult("smtp", False, f"{where}: {error}")


def check_imap_login(settings: Settings) -> CheckResult:
    """Log in to the intake mailbox; also shows login failures the worker has recorded."""
    from casework.db import make_sessions
    from scheduler.imap_intake import check_imap

    engine = make_engine(settings.database.url)
    try:
        ok, detail = check_imap(settings, make_sessions(engine))
    finally:
        engine.dispose()
    return CheckResult("imap", ok, detail)


def checks_for(settings: Settings) -> list[Callable[[], CheckResult]]:
    from scheduler.hygiene import check_hygiene

    checks: list[Callable[[], CheckResult]] = [
        lambda: check_database(settings),
        lambda: check_hygiene(settings),
    ]
    if settings.intake.source is IntakeSource.MAILDIR:
        checks.append(lambda: check_maildir("intake", settings.intake.maildir))
    else:
        checks.append(lambda: check_imap_login(settings))
    if settings.outbound.transport is Transport.MAILDIR:
        checks.append(lambda: check_maildir("outbound", settings.outbound.maildir))
    else:
        checks.append(lambda: check_smtp(settings))
    from scheduler.check_moderators import check_moderators  # imports CheckResult from here

    checks.append(lambda: check_moderators(settings))
    return checks


def run_checks(settings: Settings, *, as_json: bool) -> int:
    """Print one line per check; exit 0 only when all pass."""
    results = [CheckResult("config", True, f"{settings.source_path}: valid")]
    results += [check() for check in checks_for(settings)]
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for result in results:
            print(f"{'ok  ' if result.ok else 'FAIL'} {result.name:10} {result.detail}")
    return 0 if all(r.ok for r in results) else 1
