"""The moderator command language: reading a block of `/word` lines and validating it whole."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from casework.models import CaseStatus
from casework.rules import RULES, find_rule
from casework.settings import Step

_COMMAND = re.compile(r"^ ?/(?P<verb>[A-Za-z][A-Za-z-]*)(?=\s|$)(?P<rest>.*)$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_REF = re.compile(r"^TS-(\d{1,12})$", re.IGNORECASE)
_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SEVERITIES = ("low", "medium", "high", "critical")
CLOSE_REASONS = ("no-violation", "duplicate", "resolved")

OPEN = frozenset({CaseStatus.OPEN})
OPEN_OR_CLOSED = frozenset({CaseStatus.OPEN, CaseStatus.CLOSED})
CLOSED = frozenset({CaseStatus.CLOSED})
ANY = frozenset(CaseStatus)


class Verb(StrEnum):
    ASSIGN = "assign"
    SUBJECT = "subject"
    PROGRAM = "program"
    CATEGORY = "category"
    SEVERITY = "severity"
    NOTE = "note"
    REPLY = "reply"
    MESSAGE = "message"
    CLOSE = "close"
    REOPEN = "reopen"
    MERGE = "merge"
    HELP = "help"
    WARN = "warn"
    STRIKE = "strike"
    BAN = "ban"
    ESCALATE = "escalate"
    APPROVE = "approve"
    REJECT = "reject"
    UPHOLD = "uphold"
    OVERTURN = "overturn"
    REVOKE = "revoke"


# Commands whose TEXT may run on over the following lines; after any other command, lines that
# are not commands are reported as unprocessed.
TEXT_VERBS = frozenset(
    {
        "note",
        "reply",
        "message",
        "close",
        "warn",
        "strike",
        "ban",
        "escalate",
        "reject",
        "uphold",
        "overturn",
        "revoke",
    }
)

SANCTIONS: dict[Verb, Step | None] = {
    Verb.WARN: Step.WARNING,
    Verb.STRIKE: Step.STRIKE,
    Verb.BAN: Step.BAN,
    Verb.ESCALATE: None,
}


@dataclass(frozen=True)
class Spec:
    """What a command takes and in which case states it may be used."""

    usage: str
    states: frozenset[CaseStatus]
    summary: str


SPECS: dict[Verb, Spec] = {
    Verb.ASSIGN: Spec("/assign me|EMAIL", OPEN, "take the case, or give it to a moderator"),
    Verb.SUBJECT: Spec("/subject EMAIL", OPEN, "name the reported person"),
    Verb.PROGRAM: Spec("/program CODE", OPEN, "name the program in violation"),
    Verb.CATEGORY: Spec("/category RULE", OPEN, "the rule broken (a rule code)"),
    Verb.SEVERITY: Spec("/severity " + "|".join(SEVERITIES), OPEN, "how serious it is"),
    Verb.NOTE: Spec("/note TEXT", OPEN_OR_CLOSED, "an internal note, never sent to a party"),
    Verb.REPLY: Spec("/reply TEXT", OPEN_OR_CLOSED, "email the reporter on their thread"),
    Verb.MESSAGE: Spec(
        "/message TEXT", OPEN_OR_CLOSED, "email the reported person (no sanction, no source)"
    ),
    Verb.CLOSE: Spec(
        "/close [" + "|".join(CLOSE_REASONS) + "] [TEXT]", OPEN, "close the case (TEXT internal)"
    ),
    Verb.REOPEN: Spec("/reopen", CLOSED, "open a closed case again"),
    Verb.MERGE: Spec("/merge TS-n", OPEN, "fold this case into another open case"),
    Verb.HELP: Spec("/help", ANY, "this list"),
    Verb.WARN: Spec("/warn TEXT", OPEN, "issue a warning; TEXT: the facts relied on"),
    Verb.STRIKE: Spec("/strike TEXT", OPEN, "issue a strike; TEXT: the facts relied on"),
    Verb.BAN: Spec("/ban TEXT", OPEN, "propose a ban; TEXT: the facts relied on"),
    Verb.ESCALATE: Spec("/escalate TEXT", OPEN, "the next step on the ladder; TEXT: the facts"),
    Verb.APPROVE: Spec("/approve", OPEN_OR_CLOSED, "approve a pending ban (second moderator)"),
    Verb.REJECT: Spec("/reject [TEXT]", OPEN_OR_CLOSED, "reject a pending ban"),
    Verb.UPHOLD: Spec("/uphold TEXT", OPEN_OR_CLOSED, "decide an appeal: the action stands"),
    Verb.OVERTURN: Spec("/overturn TEXT", OPEN_OR_CLOSED, "decide an appeal: the action ends"),
    Verb.REVOKE: Spec("/revoke ACTION TEXT", OPEN_OR_CLOSED, "withdraw an action issued in error"),
}


@dataclass(frozen=True)
class Command:
    """One command as written: its verb, the words after it and any continuation lines."""

    verb: str
    line: str
    argument: str
    more: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The argument and its continuation lines, as one text."""
        return "\n".join([self.argument, *self.more]).strip()

    @property
    def written(self) -> str:
        """The command line as typed, and how many lines of TEXT followed it."""
        extra = sum(1 for line in self.more if line.strip())
        suffix = f"  [+{extra} more line(s)]" if extra else ""
        return f"{self.line.strip()}{suffix}"


@dataclass(frozen=True)
class Block:
    """A reply's typed part read as commands, with the lines that were not part of any."""

    commands: tuple[Command, ...]
    unprocessed: tuple[str, ...]
    text: str

    @property
    def fingerprint(self) -> str:
        """Stable across re-sends of the same block (same commands, same words)."""
        canon = "\n".join(
            " ".join(f"/{c.verb.lower()} {c.text}".split()) for c in self.commands
        ).encode()
        return hashlib.sha256(canon).hexdigest()


def read_block(text: str) -> Block:
    """Split the typed part into commands; TEXT runs on until the next command line."""
    commands: list[Command] = []
    unprocessed: list[str] = []
    current: Command | None = None
    more: list[str] = []
    for line in text.splitlines():
        found = _COMMAND.match(line)
        if found is not None:
            if current is not None:
                commands.append(_with_more(current, more))
            current = Command(found["verb"].lower(), line, found["rest"].strip())
            more = []
        elif current is not None and current.verb in TEXT_VERBS:
            more.append(line.rstrip())
        elif line.strip():
            unprocessed.append(line.rstrip())
    if current is not None:
        commands.append(_with_more(current, more))
    return Block(tuple(commands), tuple(unprocessed), text.strip())


def _with_more(command: Command, more: list[str]) -> Command:
    while more and not more[-1].strip():
        more.pop()
    return Command(command.verb, command.line, command.argument, tuple(more))


# --- validation -----------------------------------------------------------------------------


@dataclass
class Draft:
    """The case as the block would leave it, line by line, before anything is written."""

    status: CaseStatus
    has_reporter: bool
    has_subject: bool
    category: str | None
    ref: str


@dataclass(frozen=True)
class Planned:
    """A command that passed validation, with its arguments read into values."""

    command: Command
    verb: Verb
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    command: Command
    error: str


@dataclass(frozen=True)
class Lookups:
    """What validation may ask the database (read-only), passed in by the caller."""

    moderator: str
    is_moderator: Callable[[str], bool]
    program_exists: Callable[[str], bool]
    merge_target_error: Callable[[int], str | None]
    forbidden_subjects: frozenset[str]


def validate_block(
    block: Block, draft: Draft, lookups: Lookups
) -> tuple[list[Planned | Problem], bool]:
    """Each command checked in order against the state the earlier ones would leave."""
    results: list[Planned | Problem] = []
    ok = True
    for command in block.commands:
        outcome = _validate(command, draft, lookups)
        if isinstance(outcome, Problem):
            ok = False
        results.append(outcome)
    return results, ok


def _validate(command: Command, draft: Draft, lookups: Lookups) -> Planned | Problem:
    try:
        verb = Verb(command.verb)
    except ValueError:
        return Problem(command, f"unknown command /{command.verb}; send /help for the list")
    spec = SPECS[verb]
    if draft.status not in spec.states:
        allowed = " or ".join(sorted(state.value for state in spec.states))
        return Problem(
            command,
            f"/{verb} is not allowed while {draft.ref} is {draft.status}; it needs {allowed}",
        )
    try:
        values = _CHECKS[verb](command, draft, lookups)
    except ValueError as error:
        return Problem(command, f"{error} (usage: {spec.usage})")
    return Planned(command, verb, values)


def _no_argument(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    if command.text:
        raise ValueError(f"/{command.verb} takes no argument")
    return {}


def _require_text(command: Command, what: str) -> str:
    if not command.text:
        raise ValueError(f"/{command.verb} needs {what}")
    return command.text


def _single_word(command: Command, what: str) -> str:
    words = command.text.split()
    if len(words) != 1:
        raise ValueError(f"/{command.verb} needs exactly one {what}")
    return words[0]


def _check_assign(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    who = _single_word(command, "moderator (me or an address)").lower()
    if who == "me":
        who = lookups.moderator
    if not lookups.is_moderator(who):
        raise ValueError(f"{who} is not a moderator")
    return {"assignee": who}


def _check_subject(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    address = _single_word(command, "email address").strip("<>").lower()
    if not _EMAIL.match(address):
        raise ValueError(f"{address!r} is not an email address")
    if address in lookups.forbidden_subjects or lookups.is_moderator(address):
        raise ValueError(f"{address} cannot be the reported person on this case")
    draft.has_subject = True
    return {"email": address}


def _check_program(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    code = _single_word(command, "program code")
    if not _PROGRAM.match(code) or not lookups.program_exists(code):
        raise ValueError(f"no program {code!r} (programs come from `safetydesk programs import`)")
    return {"code": code}


def _check_category(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    code = _single_word(command, "rule code").lower()
    rule = find_rule(code)
    if rule is None:
        codes = ", ".join(r.code for r in RULES)
        raise ValueError(f"unknown rule {code!r}; rule codes: {codes}")
    draft.category = rule.code
    return {"code": rule.code}


def _check_severity(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    level = _single_word(command, "severity").lower()
    if level not in SEVERITIES:
        raise ValueError(f"unknown severity {level!r}")
    return {"severity": level}


def _check_note(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    return {"text": _require_text(command, "TEXT")}


def _check_reply(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    text = _require_text(command, "TEXT for the reporter")
    if not draft.has_reporter:
        raise ValueError(f"{draft.ref} has no reporter to reply to")
    return {"text": text}


def _check_message(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    text = _require_text(command, "TEXT for the reported person")
    if not draft.has_subject:
        raise ValueError(f"{draft.ref} has no reported person yet; use /subject EMAIL first")
    return {"text": text}


def _check_close(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    words = command.text.split(maxsplit=1)
    reason = "resolved"
    text = command.text
    if words and words[0].lower() in CLOSE_REASONS:
        reason = words[0].lower()
        text = command.text[len(words[0]) :].strip()
    elif words and words[0].lower().rstrip(".,:") in {"no", "noviolation", "dup", "done"}:
        raise ValueError(f"unknown close reason {words[0]!r}")
    if reason == "no-violation" and not draft.has_reporter:
        raise ValueError(f"{draft.ref} has no reporter to tell the outcome")
    draft.status = CaseStatus.CLOSED
    return {"reason": reason, "text": text}


def _check_reopen(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    _no_argument(command, draft, lookups)
    draft.status = CaseStatus.OPEN
    return {}


def _check_merge(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    ref = _single_word(command, "case reference")
    found = _REF.match(ref)
    if found is None:
        raise ValueError(f"{ref!r} is not a case reference")
    target = int(found.group(1))
    error = lookups.merge_target_error(target)
    if error:
        raise ValueError(error)
    draft.status = CaseStatus.MERGED
    return {"target": str(target)}


def _check_sanction(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    facts = _require_text(command, "TEXT: the facts relied on")
    if not draft.has_subject:
        raise ValueError(f"{draft.ref} has no reported person yet; use /subject EMAIL first")
    if draft.category is None:
        raise ValueError(f"{draft.ref} has no rule yet; use /category RULE first")
    return {"facts": facts}


def _check_optional_text(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    return {"text": command.text}


def _check_decision(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    return {"text": _require_text(command, "TEXT: the reasons for the decision")}


def _check_revoke(command: Command, draft: Draft, lookups: Lookups) -> dict[str, str]:
    words = command.text.split(maxsplit=1)
    if len(words) < 2:
        raise ValueError("/revoke needs the ACTION and TEXT explaining the mistake")
    return {"action": words[0], "text": words[1].strip()}


_CHECKS: dict[Verb, Callable[[Command, Draft, Lookups], dict[str, str]]] = {
    Verb.ASSIGN: _check_assign,
    Verb.SUBJECT: _check_subject,
    Verb.PROGRAM: _check_program,
    Verb.CATEGORY: _check_category,
    Verb.SEVERITY: _check_severity,
    Verb.NOTE: _check_note,
    Verb.REPLY: _check_reply,
    Verb.MESSAGE: _check_message,
    Verb.CLOSE: _check_close,
    Verb.REOPEN: _check_reopen,
    Verb.MERGE: _check_merge,
    Verb.HELP: _no_argument,
    Verb.WARN: _check_sanction,
    Verb.STRIKE: _check_sanction,
    Verb.BAN: _check_sanction,
    Verb.ESCALATE: _check_sanction,
    Verb.APPROVE: _no_argument,
    Verb.REJECT: _check_optional_text,
    Verb.UPHOLD: _check_decision,
    Verb.OVERTURN: _check_decision,
    Verb.REVOKE: _check_revoke,
}


def cheat_sheet() -> list[tuple[str, str, str]]:
    """Every command with its usage, the states it works in, and what it does."""
    return [
        (spec.usage, "/".join(sorted(s.value for s in spec.states)), spec.summary)
        for spec in SPECS.values()
    ]
