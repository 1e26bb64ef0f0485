"""Mail hygiene wiring and CLI: settings into limits, caps and suppression; `suppressions`."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from casework.audit import record_event
from casework.clock import SystemClock
from casework.db import transaction
from casework.models import QuarantineEntry, QuarantineStatus, Suppression
from casework.suppressions import SuppressionPolicy, clear_suppression, list_suppressions
from intake.bounds import Limits
from intake.pipeline import Outcome, Result
from outbound.caps import CapPolicy
from scheduler.check import CheckResult
from scheduler.config import Settings
from scheduler.tables import emit_rows


def hygiene_limits(settings: Settings) -> Limits:
    hygiene = settings.hygiene
    return Limits(
        max_message_bytes=settings.intake.max_message_bytes,
        max_header_bytes=hygiene.max_header_bytes,
        max_mime_depth=hygiene.max_mime_depth,
        max_attachment_bytes=hygiene.max_attachment_bytes,
        parse_timeout=hygiene.parse_timeout.approximate().total_seconds(),
        parse_memory_bytes=hygiene.parse_memory_bytes,
    )


def suppression_policy(settings: Settings) -> SuppressionPolicy:
    return SuppressionPolicy(
        after_bounces=settings.hygiene.suppress_after_bounces,
        period=settings.hygiene.suppress_for,
    )


def cap_policy(settings: Settings) -> CapPolicy:
    hygiene = settings.hygiene
    return CapPolicy(
        per_address_cap=hygiene.per_address_cap,
        per_address_window=hygiene.per_address_window.approximate(),
        global_cap_per_hour=hygiene.global_cap_per_hour,
        moderator_cap=hygiene.moderator_cap,
        exempt=frozenset(a.lower() for a in settings.moderators.addresses),
    )


def add_suppressions_parser(commands: Any, parse_now: Any) -> None:
    """`safetydesk suppressions list|clear ADDRESS`."""
    parser = commands.add_parser("suppressions", help="addresses not mailed after hard bounces")
    actions = parser.add_subparsers(dest="suppressions_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="suppressed addresses (active ones by default)")
    listing.add_argument("--all", action="store_true", help="also expired and cleared ones")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--now", type=parse_now, metavar="ISO8601")
    clear = actions.add_parser("clear", help="mail ADDRESS again; its bounce count restarts")
    clear.add_argument("address", metavar="ADDRESS")
    clear.add_argument("--by", default="cli", help="who cleared it (recorded in the audit log)")
    clear.add_argument("--now", type=parse_now, metavar="ISO8601")


def suppression_row(row: Suppression) -> dict[str, Any]:
    return {
        "address": row.address,
        "reason": row.reason,
        "bounces": row.bounces,
        "since": row.since.isoformat(),
        "until": row.until.isoformat(),
        "cleared_at": row.cleared_at.isoformat() if row.cleared_at else None,
        "cleared_by": row.cleared_by or None,
    }


def run_suppressions(sessions: Any, args: argparse.Namespace) -> int:
    """List or clear suppressions; exit 1 when there was nothing to clear."""
    now = SystemClock().now() if args.now is None else args.now
    if args.suppressions_command == "list":
        session: Session
        with sessions() as session:
            rows = [
                suppression_row(r) for r in list_suppressions(session, now, everything=args.all)
            ]
        columns = ["address", "bounces", "since", "until", "cleared_at", "reason"]
        return emit_rows(rows, args.json, columns)
    with transaction(sessions) as session:
        cleared = clear_suppression(session, args.address, now, actor=args.by)
    if not cleared:
        print(f"safetydesk: {args.address} is not suppressed", file=sys.stderr)
        return 1
    print(f"{args.address.strip().lower()}: suppression cleared")
    return 0


def check_hygiene(settings: Settings) -> CheckResult:
    """Held outbound mail and suppressed addresses, for the operator (informational)."""
    from sqlalchemy import func, select

    from casework.db import make_engine, make_sessions
    from casework.models import OutboxHold
    from outbound.caps import held_counts

    engine = make_engine(settings.database.url)
    try:
        with make_sessions(engine)() as session:
            counts = held_counts(session)
            now = SystemClock().now()
            suppressed = len(list_suppressions(session, now, everything=False))
            oldest = session.scalar(
                select(func.min(OutboxHold.held_at)).where(OutboxHold.released_at.is_(None))
            )
    except Exception as error:
        return CheckResult("hygiene", False, f"cannot read held mail: {type(error).__name__}")
    finally:
        engine.dispose()
    total = sum(counts.values())
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
    detail = f"{total} held" + (f" ({kinds})" if kinds else "") + f"; {suppressed} suppressed"
    if oldest is not None:
        detail += f"; oldest held since {oldest.isoformat()}"
    return CheckResult("hygiene", True, detail)


def replay_outcome(session: Session, entry_id: int, result: Result, now: datetime) -> None:
    """Mark a replayed quarantine entry (the pipeline updated it already if it failed again)."""
    stored = session.get_one(QuarantineEntry, entry_id)
    if result.outcome is not Outcome.QUARANTINED:
        stored.status = QuarantineStatus.REPLAYED
        stored.replayed_at = now
        record_event(
            session,
            now,
            "quarantine.replayed",
            quarantine=entry_id,
            outcome=result.outcome.value,
            case_id=result.case_id,
            reason=result.reason,
        )
        return
    record_event(
        session, now, "quarantine.replay-failed", quarantine=entry_id, reason=stored.reason
    )
