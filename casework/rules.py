"""The policy's ground rules as rule codes, each with the words of the policy it enforces."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    title: str
    quote: str
    keywords: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
    Rule(
        "spam",
        "Don't spam",
        "Once you're on the eCareerMentor platform, don't try to sell other products or spam "
        "each other with requests and offers.",
        ("spam", "selling", "sell other", "promotion", "advertis", "unsolicited"),
    ),
    Rule(
        "off-platform",
        "Don't game the system: directing students off the platform",
        "Don't direct eCareerMentor's students away from the eCareerMentor platform.",
        (
            "whatsapp",
            "telegram",
            "off the platform",
            "off-platform",
            "outside the platform",
            "outside ecareermentor",
            "pay me directly",
            "paypal",
            "venmo",
            "my own website",
        ),
    ),
    Rule(
        "loophole",
        "Don't game the system: loopholes",
        "Don't push the envelope on what is and is not allowed, or search for loopholes in "
        "policies.",
        ("loophole",),
    ),
    Rule(
        "harassment",
        "Don't game the system: harassing mentors",
        "Don't harass mentors.",
        ("harass", "abusive", "threaten", "threat", "insult", "bully", "stalk"),
    ),
    Rule(
        "coupon-request",
        "Don't game the system: asking for free coupons",
        "Don't ask for free coupons.",
        ("coupon", "free access", "discount code"),
    ),
    Rule(
        "review-exchange",
        "Don't game the system: reviews in exchange for things",
        "Don't offer reviews in exchange for things.",
        (
            "review in exchange",
            "5-star",
            "five star",
            "fake review",
            "exchange for a review",
            "in exchange for a review",
            "good review",
        ),
    ),
    Rule(
        "unprofessional",
        "Keep it professional",
        "We ask that, in connection with those relationships, you are respectful, honest, and "
        "considerate with students, mentors, and eCareerMentor's staff.",
        ("rude", "unprofessional", "disrespect", "offensive"),
    ),
    Rule(
        "personal-info",
        "Keep it professional: personal information",
        "Never ask for personal information.",
        (
            "personal information",
            "phone number",
            "home address",
            "passport",
            "bank details",
            "date of birth",
            "social security",
        ),
    ),
    Rule(
        "unoriginal-content",
        "Keep it professional: unoriginal content",
        "Never post unoriginal content as your own.",
        ("plagiar", "copied", "stolen content", "not his own", "not her own", "unoriginal"),
    ),
    Rule("other", "Other policy violation", "Be a positive member of the eCareerMentor community."),
)

RULES_BY_CODE = {rule.code: rule for rule in RULES}

# Both are matched against lowered text (faster than re.IGNORECASE on every new message).
_REPORT_WORDS = re.compile(
    r"\b(report|reporting|violat|complain|harass|abus|spam|scam|asked me|asking me|"
    r"threat|fake|plagiar|copied|misconduct|inappropriate)"
)
_QUESTION_WORDS = re.compile(
    r"(\?|\b(is it allowed|am i allowed|can i|may i|could you clarify|question about|"
    r"what is the policy|how do(es)? the policy|policy question)\b)"
)


def find_rule(code: str) -> Rule | None:
    return RULES_BY_CODE.get(code.strip().lower())


def guess_rule(text: str) -> str | None:
    """The rule code whose keywords the text mentions most, if any; a suggestion only."""
    lowered = text.lower()
    scores = [
        (sum(lowered.count(word) for word in rule.keywords), index, rule.code)
        for index, rule in enumerate(RULES)
        if rule.keywords
    ]
    best = max(scores)
    return best[2] if best[0] > 0 else None


def is_question(subject: str, text: str) -> bool:
    """True when the message asks about a policy and reports nothing."""
    whole = f"{subject}\n{text}".lower()
    return bool(_QUESTION_WORDS.search(whole)) and not _REPORT_WORDS.search(whole)
