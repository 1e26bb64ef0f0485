"""Enforcement services: sanctions on the ladder, ban approval, appeals and revocation.

The command language calls these; each returns a one-line summary for the moderator's transcript
and raises EnforcementError, saying why, when the command is not allowed now.
"""

from __future__ import annotations

from casework.appeals import decide_appeal, parse_action_ref, record_appeal, revoke_action
from casework.sanctions import (
    EnforcementError,
    apply_sanction,
    approve_ban,
    reject_ban,
    send_reporter_outcome,
)

__all__ = [
    "EnforcementError",
    "apply_sanction",
    "approve_ban",
    "decide_appeal",
    "parse_action_ref",
    "record_appeal",
    "reject_ban",
    "revoke_action",
    "send_reporter_outcome",
]
