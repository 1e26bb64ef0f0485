"""A local Maildir as the desk's mailbox: new messages are read, then marked seen after commit."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from intake.pipeline import Result, SourceRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaildirMessage:
    key: str
    path: Path


@dataclass(frozen=True)
class MaildirSource:
    """Reads `new/` oldest first; a handled message moves to `cur/` with the Seen flag."""

    path: Path

    def ensure(self) -> None:
        for sub in ("new", "cur", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def waiting(self) -> Iterator[MaildirMessage]:
        self.ensure()
        entries = sorted(
            (entry for entry in os.scandir(self.path / "new") if entry.is_file()),
            key=lambda entry: (entry.stat().st_mtime_ns, entry.name),
        )
        for entry in entries:
            yield MaildirMessage(key=entry.name, path=Path(entry.path))

    def mark_handled(self, message: MaildirMessage) -> None:
        # Maildir: a message seen by its reader moves to cur/ with an info suffix (":2,S").
        target = self.path / "cur" / f"{message.key.split(':')[0]}:2,S"
        os.replace(message.path, target)

    def drain(
        self,
        handle: Callable[[bytes, SourceRef], Result],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[Result]:
        """Hand every waiting message to `handle`; one that raises stays in new/ for next time."""
        results = []
        for message in self.waiting():
            if should_stop():
                break
            try:
                raw = message.path.read_bytes()
            except FileNotFoundError:
                continue  # another reader took it
            result = handle(raw, SourceRef(label=f"maildir:{message.path}"))
            self.mark_handled(message)
            results.append(result)
        return results
