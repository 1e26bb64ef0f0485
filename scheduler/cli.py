"""The `safetydesk` command line: the worker, intake, database, inspection and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from casework.cases import UnknownCase
from casework.clock import Clock, FixedClock, SystemClock, as_utc
from casework.db import make_engine, upgrade
from casework.models import OutboxMessage, OutboxStatus, QuarantineEntry
from intake.imap_client import ImapError
from intake.pipeline import Outcome, SourceRef, TemporaryFailure
from scheduler.app import App, NotMigrated, build_app
from scheduler.cli_enforcement import add_parsers as add_enforcement_parsers
from scheduler.cli_enforcement import dispatch as dispatch_enforcement
from scheduler.config import ConfigError, Settings, load_settings
from scheduler.hygiene import add_suppressions_parser, replay_outcome, run_suppressions
from scheduler.tables import cell, emit_rows
from scheduler.views import list_cases, list_outbox, list_quarantine, quarantine_row, show_case

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_CONFIG = 78  # sysexits.h EX_CONFIG
EX_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: the MTA keeps the message and retries

DEFAULT_CONFIG = "safetydesk.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safetydesk",
        description="The email-driven Trust & Safety desk of eCareerMentor.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"config file (default: $SAFETYDESK_CONFIG, else ./{DEFAULT_CONFIG})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the worker (poll, sweep, deliver)")
    run.add_argument(
        "--once",
        action="store_true",
        help="process what is waiting, run due jobs, flush the outbox, then exit",
    )
    run.add_argument(
        "--now",
        type=_parse_now,
        metavar="ISO8601",
        help="the clock for this run, e.g. 2027-01-31T09:00:00Z",
    )

    ingest = commands.add_parser("ingest", help="feed raw messages (files or - for stdin)")
    ingest.add_argument("files", nargs="*", default=["-"], metavar="FILE|-")
    ingest.add_argument("--now", type=_parse_now, metavar="ISO8601")
    ingest.add_argument("--json", action="store_true")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply the Alembic migrations (SQLite, PostgreSQL)")

    check = commands.add_parser("check", help="check config, database, mailbox and SMTP")
    check.add_argument("--json", action="store_true")

    cases = commands.add_parser("cases", help="list and show cases")
    case_commands = cases.add_subparsers(dest="cases_command", required=True, metavar="ACTION")
    case_list = case_commands.add_parser("list", help="all cases")
    case_list.add_argument("--status", choices=["open", "closed", "merged"])
    case_list.add_argument("--json", action="store_true")
    case_show = case_commands.add_parser("show", help="one case with its messages and events")
    case_show.add_argument("ref", metavar="REF", help="TS-<number>")
    case_show.add_argument("--json", action="store_true")

    outbox = commands.add_parser("outbox", help="outbound mail")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    outbox_list = outbox_commands.add_parser("list", help="queued, sent and dead mail")
    outbox_list.add_argument("--status", choices=[s.value for s in OutboxStatus])
    outbox_list.add_argument("--json", action="store_true")
    outbox_retry = outbox_commands.add_parser("retry", help="send dead or held mail again")
    outbox_retry.add_argument(
        "ids", nargs="*", type=int, metavar="ID", help="outbox ids (default: every dead message)"
    )
    outbox_retry.add_argument(
        "--held",
        action="store_true",
        help="also have the next delivery run look at all held mail again (after raising a cap)",
    )
    outbox_retry.add_argument("--now", type=_parse_now, metavar="ISO8601")

    quarantine = commands.add_parser("quarantine", help="mail that could not be processed")
    q_commands = quarantine.add_subparsers(
        dest="quarantine_command", required=True, metavar="ACTION"
    )
    q_list = q_commands.add_parser("list", help="quarantined messages")
    q_list.add_argument("--json", action="store_true")
    q_show = q_commands.add_parser("show", help="one entry with its error")
    q_show.add_argument("id", type=int)
    q_show.add_argument("--raw", action="store_true", help="print the raw message bytes")
    q_show.add_argument("--json", action="store_true")
    q_replay = q_commands.add_parser("replay", help="run a quarantined message through again")
    q_replay.add_argument("id", type=int)
    q_replay.add_argument("--now", type=_parse_now, metavar="ISO8601")

    add_enforcement_parsers(commands, _parse_now)
    add_suppressions_parser(commands, _parse_now)

    demo = commands.add_parser("demo", help="the whole flow on SQLite and local Maildirs")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("demo"),
        help="where the demo keeps its database and Maildirs (default: ./demo)",
    )
    return parser


def _parse_now(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from scheduler.demo import run_demo

        return run_demo(args.dir)
    try:
        settings = _load(args.config)
    except ConfigError as error:
        print(f"safetydesk: config error: {error}", file=sys.stderr)
        return EX_TEMPFAIL if args.command == "ingest" else EX_CONFIG
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _dispatch(args, settings)
    except NotMigrated as error:
        print(f"safetydesk: {error}", file=sys.stderr)
        return EX_TEMPFAIL if args.command == "ingest" else EX_FAILURE
    except UnknownCase as error:
        print(f"safetydesk: {error}", file=sys.stderr)
        return EX_FAILURE
    except ImapError as error:
        print(f"safetydesk: IMAP: {error}", file=sys.stderr)
        return EX_TEMPFAIL


def _load(path: Path | None) -> Settings:
    chosen = path or Path(os.environ.get("SAFETYDESK_CONFIG", DEFAULT_CONFIG))
    return load_settings(chosen)


def _clock(now: datetime | None) -> Clock:
    return FixedClock(now) if now is not None else SystemClock()


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "db":
        upgrade(make_engine(settings.database.url))
        print("database is at the newest schema")
        return EX_OK
    if args.command == "check":
        from scheduler.check import run_checks

        return run_checks(settings, as_json=args.json)
    if args.command == "ingest":
        return _ingest(settings, args)
    app = build_app(settings)
    handled = dispatch_enforcement(app, args)
    if handled is not None:
        return handled
    if args.command == "suppressions":
        return run_suppressions(app.sessions, args)
    if args.command == "run":
        from scheduler.worker import run_forever, run_once

        if args.once:
            run_once(app, _clock(args.now))
        else:
            run_forever(app, _clock(args.now))
        return EX_OK
    with app.sessions() as session:
        if args.command == "cases":
            if args.cases_command == "list":
                rows = list_cases(session, args.status)
                return emit_rows(
                    rows,
                    args.json,
                    [
                        "ref",
                        "kind",
                        "status",
                        "category",
                        "reporter",
                        "subject",
                        "program",
                        "created_at",
                    ],
                )
            return _emit_case(show_case(session, args.ref), args.json)
        if args.command == "outbox":
            if args.outbox_command == "list":
                return emit_rows(
                    list_outbox(session, args.status),
                    args.json,
                    ["id", "case", "to", "template", "status", "attempts", "last_error"],
                )
            return _retry_outbox(app, args.ids, _clock(args.now).now(), held=args.held)
        if args.command == "quarantine":
            return _quarantine(app, session, args)
    raise AssertionError(f"unhandled command {args.command}")


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    """MTA pipe semantics: 0 when every message is safely stored, 75 when any must be retried."""
    try:
        app = build_app(settings)
    except NotMigrated as error:
        print(f"safetydesk: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as error:  # database unreachable at start: the MTA should retry
        print(f"safetydesk: cannot open the database: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    now = _clock(args.now).now()
    results = []
    status = EX_OK
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as error:
            print(f"safetydesk: cannot read {name}: {error.strerror}", file=sys.stderr)
            status = EX_FAILURE
            continue
        try:
            result = app.pipeline.process(raw, SourceRef(label=f"ingest:{name}"), now)
        except TemporaryFailure as error:
            print(f"safetydesk: {name}: temporary failure: {error}", file=sys.stderr)
            return EX_TEMPFAIL
        results.append(
            {
                "file": name,
                "outcome": result.outcome.value,
                "case": f"TS-{result.case_id}" if result.case_id else None,
                "disposition": result.disposition.value if result.disposition else None,
                "reason": result.reason,
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(
                f"{row['file']}: {row['outcome']}"
                + (f" {row['case']}" if row["case"] else "")
                + (f" ({row['disposition']}: {row['reason']})" if row["disposition"] else "")
            )
    return status


def _retry_outbox(app: App, ids: list[int], now: datetime, *, held: bool) -> int:
    """Queue dead or held mail again; with `held`, have the gate look at all held mail again."""
    from sqlalchemy import func, select, update

    from casework.db import transaction
    from casework.models import OutboxHold

    with transaction(app.sessions) as session:
        if held:  # the gate decides again at the next run: nothing bypasses a cap
            open_holds = OutboxHold.released_at.is_(None)
            count = session.scalar(select(func.count()).select_from(OutboxHold).where(open_holds))
            session.execute(
                update(OutboxHold)
                .where(open_holds)
                .values(recheck_at=now)
                .execution_options(synchronize_session=False)
            )
            print(f"{count or 0} held message(s) to be looked at again")
            if not ids:
                return EX_OK
        query = select(OutboxMessage)
        query = (
            query.where(OutboxMessage.id.in_(ids))
            if ids
            else query.where(OutboxMessage.status == OutboxStatus.DEAD)
        )
        rows = list(session.scalars(query))
        for row in rows:
            if row.status in (OutboxStatus.DEAD, OutboxStatus.HELD):
                row.status = OutboxStatus.PENDING
                row.attempts = 0
                row.next_attempt_at = now
    print(f"{len(rows)} message(s) queued again")
    return EX_OK


def _quarantine(app: App, session: Any, args: argparse.Namespace) -> int:
    if args.quarantine_command == "list":
        return emit_rows(
            list_quarantine(session),
            args.json,
            ["id", "received_at", "source", "size", "status", "reason"],
        )
    entry = session.get(QuarantineEntry, args.id)
    if entry is None:
        print(f"safetydesk: no quarantine entry {args.id}", file=sys.stderr)
        return EX_FAILURE
    if args.quarantine_command == "show":
        if args.raw:
            sys.stdout.buffer.write(entry.raw)
            return EX_OK
        row = {**quarantine_row(entry), "error": entry.error}
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            for key, value in row.items():
                print(f"{key}: {value}")
        return EX_OK
    now = _clock(args.now).now()
    raw, source = entry.raw, entry.source
    session.close()
    result = app.pipeline.process(
        raw, SourceRef(label=f"replay:{source}", quarantined=args.id), now
    )
    from casework.db import transaction

    with transaction(app.sessions) as tx:
        replay_outcome(tx, args.id, result, now)
    print(
        f"quarantine {args.id}: {result.outcome.value}"
        + (f" TS-{result.case_id}" if result.case_id else "")
        + f" {result.reason}"
    )
    return EX_OK if result.outcome is not Outcome.QUARANTINED else EX_FAILURE


def _emit_case(case: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(case, indent=2, default=str))
        return EX_OK
    for key in (
        "ref",
        "kind",
        "status",
        "category",
        "suggested_category",
        "reporter",
        "subject",
        "program",
        "assignee",
        "created_at",
        "title",
    ):
        print(f"{key + ':':20}{cell(case.get(key))}")
    print("\nmessages:")
    for message in case["messages"]:
        arrow = "<-" if message["direction"] == "in" else "->"
        who = message["from"] if message["direction"] == "in" else message["to"]
        print(
            f"  {message['date']} {arrow} {who} [{message.get('party') or '-'}] "
            f"{cell(message['subject'])}"
        )
    print("\nevents:")
    for event in case["events"]:
        print(f"  {event['at']} {event['actor']}: {event['kind']}")
    if case["actions"]:
        print("\nactions:")
        for action in case["actions"]:
            print(
                f"  {action['action']} {action['kind']} of {action['person']}: "
                f"{action['status']}, counts until {action['counts_until'] or '-'}"
            )
    return EX_OK


if __name__ == "__main__":
    raise SystemExit(main())
