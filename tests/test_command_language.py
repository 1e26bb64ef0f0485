"""Reading and validating a command block, without a database."""

from __future__ import annotations

import pytest

from casework.commands import (
    SPECS,
    Draft,
    Lookups,
    Planned,
    Problem,
    Verb,
    read_block,
    validate_block,
)
from casework.models import CaseStatus

MODS = {"asha@desk.example", "ravi@desk.example"}


def lookups() -> Lookups:
    return Lookups(
        moderator="asha@desk.example",
        is_moderator=lambda address: address in MODS,
        program_exists=lambda code: code == "DATA-101",
        merge_target_error=lambda target: None if target == 7 else f"no case TS-{target}",
        forbidden_subjects=frozenset({"reporter@example.com"}),
    )


def draft(**changes: object) -> Draft:
    values: dict[str, object] = {
        "status": CaseStatus.OPEN,
        "has_reporter": True,
        "has_subject": False,
        "category": None,
        "ref": "TS-3",
    }
    values.update(changes)
    return Draft(**values)  # type: ignore[arg-type]


def check(text: str, **changes: object) -> list[Planned | Problem]:
    results, _ = validate_block(read_block(text), draft(**changes), lookups())
    return results


def test_text_runs_on_until_the_next_command() -> None:
    block = read_block(
        "Hello,\n/NOTE first line\nsecond line\n\nthird\n/assign me\nnot part of assign\n/help"
    )
    assert [c.verb for c in block.commands] == ["note", "assign", "help"]
    assert block.commands[0].text == "first line\nsecond line\n\nthird"
    assert block.commands[1].text == "me"
    assert block.unprocessed == ("Hello,", "not part of assign")


def test_a_slash_inside_a_line_is_not_a_command() -> None:
    block = read_block("see https://example.com/ban for details\nand/or /warn him")
    assert block.commands == ()


def test_fingerprint_ignores_spacing_but_not_words() -> None:
    one = read_block("/reply  We are on it.\n/assign me")
    two = read_block("/reply We are   on it.\n/ASSIGN me\n")
    three = read_block("/reply We are on it!\n/assign me")
    assert one.fingerprint == two.fingerprint != three.fingerprint


@pytest.mark.parametrize("verb", ["warn", "strike", "ban", "escalate"])
def test_sanctions_need_facts_subject_and_rule(verb: str) -> None:
    [problem] = check(f"/{verb}")
    assert isinstance(problem, Problem) and "needs TEXT" in problem.error
    [problem] = check(f"/{verb} facts")
    assert isinstance(problem, Problem) and "no reported person" in problem.error
    results = check(f"/subject k@example.com\n/category spam\n/{verb} He spammed 30 students.")
    assert all(isinstance(r, Planned) for r in results)
    assert results[2].command.text == "He spammed 30 students."


@pytest.mark.parametrize(
    ("text", "state", "ok"),
    [
        ("/approve", CaseStatus.OPEN, True),
        ("/approve", CaseStatus.CLOSED, True),
        ("/approve", CaseStatus.MERGED, False),
        ("/reject", CaseStatus.OPEN, True),
        ("/reject Not enough evidence", CaseStatus.OPEN, True),
        ("/uphold The facts stand.", CaseStatus.CLOSED, True),
        ("/overturn", CaseStatus.CLOSED, False),
        ("/revoke A-12 Wrong person", CaseStatus.CLOSED, True),
        ("/revoke A-12", CaseStatus.CLOSED, False),
        ("/warn x", CaseStatus.CLOSED, False),
        ("/help", CaseStatus.MERGED, True),
        ("/note x", CaseStatus.MERGED, False),
    ],
)
def test_states(text: str, state: CaseStatus, ok: bool) -> None:
    [result] = check(text, status=state, has_subject=True, category="spam")
    assert isinstance(result, Planned) is ok


def test_arguments() -> None:
    planned = check(
        "/assign ravi@desk.example\n/program DATA-101\n/category Off-Platform\n"
        "/severity CRITICAL\n/close duplicate see TS-7"
    )
    assert all(isinstance(r, Planned) for r in planned)
    values = [r.values for r in planned if isinstance(r, Planned)]
    assert values[0] == {"assignee": "ravi@desk.example"}
    assert values[2] == {"code": "off-platform"}
    assert values[3] == {"severity": "critical"}
    assert values[4] == {"reason": "duplicate", "text": "see TS-7"}
    [merge] = check("/merge ts-7")
    assert isinstance(merge, Planned) and merge.values == {"target": "7"}


def test_state_follows_the_block() -> None:
    results = check("/close\n/reopen\n/assign me\n/merge TS-7\n/note after merge")
    assert [isinstance(r, Planned) for r in results] == [True, True, True, True, False]


def test_every_verb_has_a_spec() -> None:
    assert set(SPECS) == set(Verb)


def test_indented_cheat_sheet_lines_are_not_commands() -> None:
    block = read_block("/assign me\n  /close no-violation\n /severity low")
    assert [c.verb for c in block.commands] == ["assign", "severity"]
    assert block.unprocessed == ("  /close no-violation",)
