"""The benchmark's CPU count by kind of process, read from a /proc tree laid out as Linux's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import process_cpu
from bench.process_cpu import spent_by_kind, take_snapshot

WORKER, HELPER, SERVER = 100, 101, 300


def write_stat(proc: Path, pid: int, name: str, parent: int, user: int, system: int) -> None:
    """A /proc/PID/stat line: pid, (name), state, ppid, then fields up to utime and stime."""
    fields = ["S", str(parent), *["0"] * 9, str(user), str(system), *["0"] * 7]
    (proc / str(pid)).mkdir(exist_ok=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    (tmp_path / "self").mkdir()  # not a process: skipped
    return tmp_path


def test_each_process_is_counted_under_its_kind(proc: Path) -> None:
    tick = process_cpu._TICK  # clock ticks a second, as /proc counts them
    layout = [
        (WORKER, "python", 1, 10, 5),
        (HELPER, "python", WORKER, 20, 0),
        (200, "postgres", 1, 3, 3),
        (SERVER, "pymap", 1, 0, 0),
        (301, "imap-login", 1, 1, 0),
        (400, "cc1 (x) y", 1, 7, 0),  # a name with spaces and parentheses
        (500, "gone", 1, 9, 9),  # ends before the second snapshot
    ]
    for pid, name, parent, user, system in layout:
        write_stat(proc, pid, name, parent, user, system)
    before = take_snapshot(proc)

    for pid, name, parent, user, system in layout[:-1]:
        write_stat(proc, pid, name, parent, user + tick, system + tick)  # 2 s more each
    write_stat(proc, 600, "postgres: worker", 1, tick, 0)  # started meanwhile: 1 s
    (proc / "500" / "stat").unlink()
    (proc / "500").rmdir()
    after = take_snapshot(proc)

    assert before.names[400] == "cc1 (x) y" and before.parents[HELPER] == WORKER
    assert dict(spent_by_kind(before, after, WORKER, SERVER)) == pytest.approx(
        {
            "worker": 2.0,
            "parse helpers": 2.0,
            "postgres": 3.0,
            "imap server": 4.0,
            "other": 2.0,
        }
    )


def test_a_process_that_spent_nothing_is_left_out(proc: Path) -> None:
    write_stat(proc, WORKER, "python", 1, 10, 5)
    write_stat(proc, 200, "postgres", 1, 3, 3)
    snapshot = take_snapshot(proc)
    assert spent_by_kind(snapshot, snapshot, WORKER) == {}


def test_without_proc_nothing_is_read(tmp_path: Path) -> None:
    empty = take_snapshot(tmp_path / "missing")
    assert empty.seconds == {} and spent_by_kind(empty, empty, WORKER) == {}
