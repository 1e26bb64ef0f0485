"""What the pipeline reads from a parsed message alone: pure work, done where it was parsed."""

from __future__ import annotations

from dataclasses import dataclass

from casework.cases import TextReading, read_text
from intake.classify import Classification, ClassifyContext, classify
from intake.parse import ParsedMessage


@dataclass(frozen=True)
class Insights:
    """A message's classification, and what a new case would take from its text."""

    classification: Classification
    text: TextReading


def gather_insights(parsed: ParsedMessage, context: ClassifyContext) -> Insights:
    return Insights(
        classification=classify(parsed, context),
        text=read_text(parsed.subject, parsed.text, parsed.from_address, context.desk_address),
    )
