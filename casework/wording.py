"""The sentences sanction notices must contain, one per required element of DESIGN.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from casework.durations import Duration
from casework.models import Detection
from casework.policy import Standing
from casework.rules import Rule
from casework.settings import PolicySettings, Step


class Element(StrEnum):
    """Every notice to an affected person states each of these (DESIGN.md)."""

    DECISION = "decision"
    SCOPE = "scope"
    DURATION = "duration"
    FACTS = "facts"
    RULE = "rule"
    DETECTION = "detection"
    REVIEW = "review"
    STANDING = "standing"
    APPEAL = "appeal"
    RESOURCES = "resources"
    REFERENCE = "reference"


def when(value: datetime | None) -> str:
    """A date people read: '28 February 2027, 09:00 UTC'."""
    if value is None:
        return "permanently"
    return f"{value.day} {value.strftime('%B %Y, %H:%M')} UTC"


def step_words(step: Step | None, policy: PolicySettings) -> str:
    if step is None:
        return "none (the account is banned)"
    if step is Step.WARNING:
        return "a warning"
    if step is Step.STRIKE:
        return f"a strike, with a suspension of {policy.suspension.describe()}"
    return "a permanent ban from the platform"


def describe_standing(policy: PolicySettings, standing: Standing) -> str:
    """What counts until when, strikes on record, and what the next step would be."""
    if standing.banned:
        return "Your standing: your account is banned; there is no further step."
    counting = [
        f"{c.kind.value} A-{c.action_id} counts until {when(c.until)}"
        for c in (*standing.active_strikes, *standing.active_warnings)
    ]
    now_part = (
        "counting against you now: " + "; ".join(counting)
        if counting
        else "no warnings or strikes count against you now"
    )
    further = (
        "If there is a further violation"
        if counting or standing.lifetime_strikes
        else "If there is a violation"
    )
    return (
        f"Your standing: {now_part}. Strikes on your record in total: "
        f"{standing.lifetime_strikes} ({standing.strikes_in_history_window} in the last "
        f"{policy.history_window.describe()}). {further}, the next step "
        f"is {step_words(standing.next_step, policy)}."
    )


@dataclass(frozen=True)
class SanctionFacts:
    """The facts of one sanction that every notice about it repeats."""

    ref: str
    action_ref: str
    rule: Rule
    facts: str
    detection: Detection
    appeal_until: datetime | None
    resources_url: str


def common_elements(facts: SanctionFacts) -> dict[str, str]:
    """The elements that read the same for the subject and for program members."""
    detected = (
        "a report from a member of our community"
        if facts.detection is Detection.COMMUNITY_REPORT
        else "our proactive monitoring of on-site behaviour"
    )
    return {
        Element.FACTS: f"The facts we relied on: {facts.facts}",
        Element.RULE: (
            f'The rule broken: {facts.rule.title}. Our policy says: "{facts.rule.quote}"'
        ),
        Element.DETECTION: f"How it came to our attention: {detected}.",
        Element.REVIEW: (
            "A member of our Trust & Safety team reviewed this case and made this decision; "
            "it was not made automatically."
        ),
        Element.APPEAL: (
            "To give context or to appeal, reply to this email by "
            f"{when(facts.appeal_until)}. A moderator who did not make this decision will "
            "review your appeal."
        ),
        Element.RESOURCES: (
            "Resources to understand our policies and be successful on eCareerMentor: "
            f"{facts.resources_url}"
        ),
        Element.REFERENCE: f"Case reference: {facts.ref} (action {facts.action_ref}).",
    }


def length_words(duration: Duration | None, since: datetime, until: datetime | None) -> str:
    if until is None or duration is None:
        return f"How long: permanently, from {when(since)}."
    return f"How long: {duration.describe()}, from {when(since)} until {when(until)}."
