"""The IMAP side's thread: steps in order, off the caller's thread, none after a failure."""

from __future__ import annotations

import threading
from functools import partial

import pytest

from intake.imap_side import ImapSide


def test_steps_run_in_order_on_one_thread_of_their_own() -> None:
    ran: list[tuple[int, str]] = []

    def step(n: int) -> int:
        ran.append((n, threading.current_thread().name))
        return n

    with ImapSide() as side:
        futures = [side.submit(partial(step, n)) for n in range(5)]
    assert [future.result() for future in futures] == [0, 1, 2, 3, 4]
    assert [n for n, _ in ran] == [0, 1, 2, 3, 4]
    threads = {name for _, name in ran}
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_after_a_failure_later_steps_fail_with_it_and_do_not_run() -> None:
    ran: list[str] = []
    refused = ConnectionResetError("connection reset by peer")

    def fail() -> None:
        ran.append("fail")
        raise refused

    with ImapSide() as side:
        first = side.submit(lambda: ran.append("first"))
        failing = side.submit(fail)
        later = side.submit(lambda: ran.append("later"))
    assert first.exception() is None
    assert failing.exception() is refused
    assert later.exception() is refused
    assert ran == ["first", "fail"]
    assert side.failure is refused


def test_closing_runs_and_waits_for_every_step_submitted() -> None:
    release = threading.Event()
    side = ImapSide()
    blocked = side.submit(lambda: release.wait(20))
    queued = side.submit(lambda: "settled")
    closer = threading.Thread(target=side.close)
    closer.start()
    assert not queued.done()  # the first step still holds the thread
    release.set()
    closer.join(20)
    assert not closer.is_alive()
    assert blocked.result() is True and queued.result() == "settled"
    with pytest.raises(RuntimeError):
        side.submit(lambda: None)
