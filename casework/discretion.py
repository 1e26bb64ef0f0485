"""Keeping the reporter out of what a moderator writes to the reported person."""

from __future__ import annotations

from casework.models import Case


def reporter_named_in(case: Case, text: str) -> str | None:
    """The reporter's address or full name when `text` contains it (any case, any spacing).

    DESIGN.md: the reported person never learns who reported. Facts, messages and reasons are
    sent to them word for word, so a moderator who pastes the reporter's address or name into
    them is stopped before anything is sent. A single-word name is not checked: it would match
    ordinary words too often to be a useful refusal.
    """
    reporter = case.reporter
    if reporter is None:
        return None
    folded = " ".join(text.split()).casefold()
    candidates = [reporter.email]
    if len(reporter.name.split()) >= 2:
        candidates.append(reporter.name)
    for candidate in candidates:
        wanted = " ".join(candidate.split()).casefold()
        if wanted and wanted in folded:
            return candidate
    return None


def refusal_for(case: Case, text: str, what: str) -> str | None:
    """The moderator's error when `text` names the reporter, else None."""
    named = reporter_named_in(case, text)
    if named is None:
        return None
    return (
        f"{what} name the reporter ({named}); the reported person must never learn who "
        "reported: write about the conduct only"
    )
