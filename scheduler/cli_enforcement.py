"""The enforcement subcommands: `enforcement EMAIL`, `people show EMAIL`, `programs import CSV`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from casework.clock import SystemClock
from casework.db import transaction
from casework.programs import RosterError, import_roster, read_roster
from scheduler.app import App
from scheduler.enforcement_views import enforcement_answer, person_history

EX_OK = 0
EX_FAILURE = 1


def add_parsers(
    commands: Any, parse_now: Callable[[str], datetime]
) -> None:  # argparse's subparsers action has no public type
    """Register the subcommands on the main parser's subparsers."""
    enforcement = commands.add_parser(
        "enforcement", help="is this person (in this program) restricted now, and why"
    )
    enforcement.add_argument("email", metavar="EMAIL")
    enforcement.add_argument("--program", metavar="CODE", help="answer for this program")
    enforcement.add_argument("--now", type=parse_now, metavar="ISO8601", help="answer as of then")
    enforcement.add_argument("--json", action="store_true")

    people = commands.add_parser("people", help="people the desk knows")
    people_commands = people.add_subparsers(dest="people_command", required=True, metavar="ACTION")
    show = people_commands.add_parser("show", help="a person's cases, actions and appeals")
    show.add_argument("email", metavar="EMAIL")
    show.add_argument("--now", type=parse_now, metavar="ISO8601")
    show.add_argument("--json", action="store_true")

    programs = commands.add_parser("programs", help="program rosters")
    program_commands = programs.add_subparsers(
        dest="programs_command", required=True, metavar="ACTION"
    )
    load = program_commands.add_parser(
        "import", help="import rosters from CSV (program,title,email,name,role)"
    )
    load.add_argument("csv", type=Path, metavar="CSV", help="the file, or - for stdin")


def dispatch(app: App, args: argparse.Namespace) -> int | None:
    """Run one of these subcommands; None when the command is not one of them."""
    if args.command == "enforcement":
        return _enforcement(app, args)
    if args.command == "people":
        return _people(app, args)
    if args.command == "programs":
        return _import(app, args.csv)
    return None


def _now(args: argparse.Namespace) -> datetime:
    given: datetime | None = args.now
    return given if given is not None else SystemClock().now()


def _enforcement(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        answer = enforcement_answer(session, app.desk.policy, args.email, _now(args), args.program)
    if args.json:
        print(json.dumps(answer, indent=2))
        return EX_OK
    where = f" in program {args.program}" if args.program else ""
    state = (
        "BANNED" if answer["banned"] else "restricted" if answer["restricted"] else "not restricted"
    )
    print(f"{answer['email']}{where}: {state} (as of {answer['at']})")
    for row in answer["restrictions"]:
        scope = "account" if row["scope"] == "account" else f"program {row['program']}"
        print(
            f"  {row['kind']} ({scope}) since {row['since']} until {row['until'] or 'permanent'}"
            f" — {row['case']} {row['action']} rule {row['rule']}"
        )
    _print_standing(answer["standing"])
    return EX_OK


def _print_standing(standing: dict[str, Any]) -> None:
    for label, key in (("warning", "active_warnings"), ("strike", "active_strikes")):
        for row in standing[key]:
            print(f"  {label} {row['action']} ({row['case']}) counts until {row['until']}")
    print(f"  lifetime strikes: {standing['lifetime_strikes']}")
    print(f"  next step: {standing['next_step'] or 'none (banned)'}")


def _people(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        history = person_history(session, app.desk.policy, args.email, _now(args))
    if history is None:
        print(f"safetydesk: nobody with the address {args.email} is known", file=sys.stderr)
        return EX_FAILURE
    if args.json:
        print(json.dumps(history, indent=2))
        return EX_OK
    print(f"{history['email']}" + (f" ({history['name']})" if history["name"] else ""))
    for row in history["programs"]:
        print(f"  {row['role']} in {row['program']}")
    print("cases:")
    for case in history["cases"]:
        print(
            f"  {case['ref']} as {case['as']}: {case['kind']} {case['status']} {case['category']}"
        )
    print("actions:")
    for action in history["actions"]:
        print(
            f"  {action['action']} {action['case']} {action['kind']} {action['status']}"
            f" issued {action['issued_at']} by {action['issued_by']}"
            f" counts until {action['counts_until'] or '-'}"
        )
    print("appeals:")
    for appeal in history["appeals"]:
        print(f"  {appeal['action']} {appeal['status']} {appeal['decided_by'] or ''}")
    print("standing:")
    _print_standing(history["enforcement"]["standing"])
    return EX_OK


def _import(app: App, path: Path) -> int:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except OSError as error:
        print(f"safetydesk: cannot read {path}: {error.strerror}", file=sys.stderr)
        return EX_FAILURE
    except UnicodeDecodeError:
        print(f"safetydesk: {path} is not UTF-8 text", file=sys.stderr)
        return EX_FAILURE
    try:
        rows = read_roster(text)
    except RosterError as error:
        print(f"safetydesk: {path}: {error}; nothing was imported", file=sys.stderr)
        return EX_FAILURE
    with transaction(app.sessions) as session:
        summary = import_roster(session, rows, SystemClock().now())
    print(f"imported {path}: {summary}")
    return EX_OK
