"""`safetydesk check`: each external dependency tried in turn, with exactly what is wrong."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import make_url, text

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


# A table is reported once this many rows changed since PostgreSQL last analyzed it, and more
# than half of its rows: autovacuum, when on, analyzes after 50 rows and a tenth of the table.
STALE_ROWS = 1000

_STALE_TABLES = text(
    "SELECT relname, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema() AND n_mod_since_analyze >= :rows"
    " AND n_mod_since_analyze * 2 > n_live_tup ORDER BY relname"
)


def check_statistics(settings: Settings) -> CheckResult:
    """PostgreSQL: no table of the desk has changed much since its last ANALYZE.

    Statements the worker's connections have prepared keep the plans made for the tables as
    they were until the next ANALYZE (see docs/operations.md); SQLite has no such plans.
    """
    engine = make_engine(settings.database.url)
    try:
        with engine.connect() as connection:
            autovacuum = connection.scalar(text("SELECT current_setting('autovacuum')"))
            stale = connection.execute(_STALE_TABLES, {"rows": STALE_ROWS}).all()
    except Exception as error:
        return CheckResult("statistics", False, f"{type(error).__name__}: {error}")
    finally:
        engine.dispose()
    if not stale:
        return CheckResult("statistics", True, f"fresh (autovacuum {autovacuum})")
    tables = ", ".join(
        f"{name} ({changed:,} of {rows:,} rows changed since)" for name, rows, changed in stale
    )
    return CheckResult(
        "statistics",
        False,
        f"not analyzed lately: {tables}; autovacuum is {autovacuum}. Run ANALYZE, and keep"
        " autovacuum on or ANALYZE from cron",
    )


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
    if make_url(settings.database.url).get_backend_name() == "postgresql":
        checks.insert(1, lambda: check_statistics(settings))
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
