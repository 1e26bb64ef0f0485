"""Which new mail is a policy question and which a report, whatever its letter case."""

from __future__ import annotations

import pytest

from casework.rules import guess_rule, is_question


@pytest.mark.parametrize(
    ("subject", "text", "question"),
    [
        ("Policy question", "Is it allowed to share my LinkedIn with a mentor.", True),
        ("Can I pay my mentor directly", "Thanks.", True),
        ("COULD YOU CLARIFY the rules on gifts", "Regards.", True),
        ("REPORT: my mentor", "Can I get help?", False),
        ("Help", "My mentor keeps HARASSING me. What can I do?", False),
        ("Hello", "Thanks for the session last week.", False),
    ],
)
def test_a_question_is_known_by_its_words_in_any_case(
    subject: str, text: str, question: bool
) -> None:
    assert is_question(subject, text) is question


def test_the_suggested_rule_ignores_letter_case() -> None:
    assert guess_rule("He asked me to PAY HIM ON WHATSAPP") == guess_rule(
        "he asked me to pay him on whatsapp"
    )
    assert guess_rule("He asked me to PAY HIM ON WHATSAPP") is not None
