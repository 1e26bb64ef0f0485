"""CPU time each kind of process on the machine spent over a stretch, read from /proc (Linux)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds so far of every process then running, by pid, with its name and parent."""

    seconds: dict[int, float]
    names: dict[int, str]
    parents: dict[int, int]


def take_snapshot(proc: Path = Path("/proc")) -> Snapshot:
    """Every process's user + system CPU seconds so far; empty where there is no /proc."""
    seconds: dict[int, float] = {}
    names: dict[int, str] = {}
    parents: dict[int, int] = {}
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # The name is in parentheses and may hold spaces; the fields after it are plain.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICK
        names[pid] = name
        parents[pid] = int(fields[1])
    return Snapshot(seconds, names, parents)


def spent_by_kind(
    before: Snapshot, after: Snapshot, worker: int, server: int | None = None
) -> Counter[str]:
    """CPU seconds spent between the snapshots, by kind: the worker itself, its other child
    processes (the parse helpers), PostgreSQL, the IMAP server (Dovecot's processes, or the
    process `server`), and everything else. A process that started meanwhile counts from
    zero; one that ended meanwhile is not counted."""
    spent: Counter[str] = Counter()
    for pid, seconds in after.seconds.items():
        used = seconds - before.seconds.get(pid, 0.0)
        if used > 0:
            spent[_kind(pid, after, worker, server)] += used
    return spent


def _kind(pid: int, snapshot: Snapshot, worker: int, server: int | None) -> str:
    if pid == server:
        return "imap server"
    if pid == worker:
        return "worker"
    if snapshot.parents.get(pid) == worker:
        return "parse helpers"
    name = snapshot.names.get(pid, "")
    if name.startswith("postgres"):
        return "postgres"
    if name in {"imap", "imap-login", "dovecot", "anvil", "log", "config", "auth", "stats"}:
        return "imap server"
    return "other"
