"""`safetydesk check` for moderator settings: can any command ever be obeyed?"""

from __future__ import annotations

from scheduler.check import CheckResult
from scheduler.config import Settings


def check_moderators(settings: Settings) -> CheckResult:
    """Fails when moderators are configured but authentication can never succeed."""
    moderators = settings.moderators
    if not moderators.addresses:
        return CheckResult(
            "moderators", True, "none configured ([moderators] addresses): nobody can command"
        )
    if moderators.require_authenticated and not moderators.trusted_authserv_ids:
        return CheckResult(
            "moderators",
            False,
            "[moderators] require_authenticated = true but trusted_authserv_ids is empty: "
            "no command will ever be obeyed; list the authserv-id your mail server writes "
            "into Authentication-Results",
        )
    how = (
        f"authenticated by {', '.join(moderators.trusted_authserv_ids)}"
        if moderators.require_authenticated
        else "WITHOUT sender authentication (require_authenticated = false)"
    )
    return CheckResult("moderators", True, f"{len(moderators.addresses)} moderator(s), {how}")
