"""Random bytes are read from the operating system a block at a time, and never handed out twice."""

from __future__ import annotations

import os
from email import message_from_bytes

import pytest

from casework import entropy
from casework.clock import FixedClock
from casework.entropy import Entropy
from casework.notices import is_our_message_id, make_message_id
from outbound import mime
from outbound.outbox import Outbox
from scheduler.app import App
from tests.desk_helpers import feed, outbox
from tests.mail import make_mail


class CountingRead:
    """os.urandom, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, count: int) -> bytes:
        self.calls.append(count)
        return os.urandom(count)


def test_one_read_serves_a_block_and_no_piece_is_given_twice() -> None:
    read = CountingRead()
    source = Entropy(block=64, read=read)
    pieces = [source.take(16) for _ in range(8)]
    assert [len(piece) for piece in pieces] == [16] * 8
    assert len(set(pieces)) == 8
    assert read.calls == [64, 64]  # 4 pieces a block


def test_a_piece_that_does_not_fit_what_is_left_starts_a_new_block() -> None:
    read = CountingRead()
    source = Entropy(block=40, read=read)
    first, second, third = source.take(16), source.take(16), source.take(16)
    assert read.calls == [40, 40]
    assert len({first, second, third}) == 3
    assert len(source.take(100)) == 100  # more than a block: read on its own
    assert read.calls == [40, 40, 100]


def test_a_forked_child_reads_a_block_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    read = CountingRead()
    source = Entropy(block=64, read=read)
    parent = source.take(16)
    child_pid = os.getpid() + 1
    monkeypatch.setattr(entropy.os, "getpid", lambda: child_pid)
    child = source.take(16)
    assert read.calls == [64, 64]
    assert child != parent


def test_a_block_must_hold_a_byte_and_a_piece_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        Entropy(block=0)
    source = Entropy(block=64)
    with pytest.raises(ValueError, match="cannot take -1 bytes"):
        source.take(-1)
    assert source.take(0) == b""


def test_message_ids_and_boundaries_are_made_of_the_bytes_drawn() -> None:
    drawn = iter([bytes(range(16)), bytes(range(16, 32))])
    message_id = make_message_id("ecareermentor.in", lambda count: next(drawn))
    assert message_id == f"<{bytes(range(16)).hex()}@ecareermentor.in>"
    assert is_our_message_id(message_id, "ecareermentor.in")
    raw = mime.compose(
        ["Subject: x"], mime.Body("text", "<p>html</p>"), lambda count: bytes(range(16, 32))
    )
    assert message_from_bytes(raw).get_boundary() == f"=_{bytes(range(16, 32)).hex()}"


def test_the_outbox_draws_its_ids_and_boundaries_a_block_at_a_time(
    sqlite_app: App, clock: FixedClock
) -> None:
    notices = sqlite_app.desk.notices
    assert isinstance(notices, Outbox)
    read = CountingRead()
    notices._entropy = Entropy(read=read)
    for n in range(20):
        feed(
            sqlite_app,
            make_mail(f"student{n}@example.com", f"Report {n}", "He asked for money."),
            clock.now(),
        )
    rows = outbox(sqlite_app)
    assert len(rows) == 60  # an acknowledgement and an email to each of two moderators
    ids = {row.message_id for row in rows}
    assert len(ids) == 60 and all(is_our_message_id(i, "ecareermentor.in") for i in ids)
    boundaries = {message_from_bytes(row.raw).get_boundary() for row in rows}
    assert len(boundaries) == 60
    # 60 ids and 60 boundaries of 16 bytes: 1,920 bytes, one read of a 4 KiB block.
    assert read.calls == [4096]
