"""The IMAP parse-ahead helpers obey the same limits as the pipeline's bounded parser."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from intake.bounds import Limits
from intake.classify import ClassifyContext
from intake.imap_parse import ParseAhead, Parsing, Prepared, parse_or_none
from intake.insights import gather_insights
from tests.mail import make_mail

HEAD = b"From: a@example.com\nTo: mentor4u@ecareermentor.in\nSubject: slow\nMIME-Version: 1.0\n"


def parse_now(ahead: ParseAhead, raws: list[bytes]) -> Iterator[Prepared | None]:
    """Hand `raws` over and take them back, as the intake does with each batch."""
    return ahead.results(ahead.submit(raws))


def slow_message() -> bytes:
    """Twenty nested multiparts, then a million stray delimiter lines: seconds of parsing."""
    opened = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n'.encode() for n in range(20)
    )
    closed = b"".join(f"--b{n}--\n".encode() for n in reversed(range(20)))
    return HEAD + opened + b"Content-Type: text/plain\n\nbottom\n" + b"--zz\n" * 1_000_000 + closed


def deep_message() -> bytes:
    opened = b"".join(
        f'Content-Type: multipart/mixed; boundary="d{n}"\n\n--d{n}\n'.encode() for n in range(500)
    )
    return HEAD + opened + b"Content-Type: text/plain\n\nbottom\n"


def test_a_parse_over_the_time_limit_hands_the_rest_back_to_the_pipeline() -> None:
    batch = [make_mail(subject=f"report {n}") for n in range(16)]
    # The chunk's allowance is 0.2 s + 0.1 s per message (1 s): four slow messages take ten
    # times that even on a fast machine (3.5 s each on one).
    batch[9:13] = [slow_message()] * 4
    ahead = ParseAhead(Limits(parse_timeout=0.2), workers=1, chunk=8)
    try:
        parsed = list(parse_now(ahead, batch))
    finally:
        ahead.close(kill=True)
    assert len(parsed) == 16
    assert all(
        p is not None and p.parsed.subject == f"report {n}" for n, p in enumerate(parsed[:8])
    )
    # The chunk with the slow message, and everything after it, is left to the bounded parser.
    assert parsed[8:] == [None] * 8


def test_a_batch_handed_over_is_parsed_before_its_results_are_asked_for() -> None:
    first = [make_mail(subject=f"first {n}") for n in range(16)]
    second = [make_mail(subject=f"second {n}") for n in range(16)]
    ahead = ParseAhead(Limits(), workers=1, chunk=8)
    try:
        handed = [ahead.submit(first), ahead.submit(second)]
        done = wait([future for parsing in handed for _, future in parsing.chunks], timeout=60)
        parsed = [list(ahead.results(parsing)) for parsing in handed]
    finally:
        ahead.close()
    assert not done.not_done  # all four chunks, with no one waiting for them
    assert [[p.parsed.subject if p else None for p in batch] for batch in parsed] == [
        [f"first {n}" for n in range(16)],
        [f"second {n}" for n in range(16)],
    ]


def test_a_batch_handed_to_helpers_that_were_killed_falls_back_and_the_next_gets_new_ones() -> None:
    slow = [make_mail(subject=f"report {n}") for n in range(16)]
    slow[9:13] = [slow_message()] * 4
    behind = [make_mail(subject=f"behind {n}") for n in range(16)]
    ahead = ParseAhead(Limits(parse_timeout=0.2), workers=1, chunk=8)
    try:
        first, second = ahead.submit(slow), ahead.submit(behind)
        from_slow = list(ahead.results(first))  # its second chunk overruns: helpers killed
        from_behind = list(ahead.results(second))
        after = list(parse_now(ahead, [make_mail(subject=f"after {n}") for n in range(16)]))
    finally:
        ahead.close(kill=True)
    assert [p is not None for p in from_slow] == [True] * 8 + [False] * 8
    assert from_behind == [None] * 16  # handed to the killed helper: the pipeline parses it
    assert [p.parsed.subject if p else None for p in after] == [f"after {n}" for n in range(16)]


def broken() -> Future[list[Prepared | None]]:
    future: Future[list[Prepared | None]] = Future()
    future.set_exception(BrokenProcessPool("a helper died"))
    return future


def cancelled() -> Future[list[Prepared | None]]:
    future: Future[list[Prepared | None]] = Future()
    future.cancel()
    return future


@pytest.mark.parametrize("ended", [broken, cancelled], ids=["broken", "cancelled"])
def test_a_chunk_whose_helpers_are_gone_is_left_to_the_pipeline(
    ended: Callable[[], Future[list[Prepared | None]]],
) -> None:
    """Helpers killed for another batch fail what was handed to them, or, when they are shut
    down first, cancel it: either way its messages come back unparsed, none lost."""
    done: Future[list[Prepared | None]] = Future()
    done.set_result([parse_or_none(make_mail(subject="first"), Limits())])
    parsing = Parsing(3, ((1, done), (2, ended())))
    items = list(ParseAhead(Limits(), workers=1).results(parsing))
    assert [item.parsed.subject if item else None for item in items] == ["first", None, None]


def test_refused_messages_come_back_unparsed_and_the_rest_parsed() -> None:
    batch = [make_mail(subject=f"report {n}") for n in range(16)]
    batch[3] = deep_message()
    ahead = ParseAhead(Limits(max_mime_depth=20), workers=1)
    try:
        parsed = list(parse_now(ahead, batch))
    finally:
        ahead.close()
    assert parsed[3] is None
    assert [p.parsed.subject for p in parsed if p is not None] == [
        f"report {n}" for n in range(16) if n != 3
    ]


def test_a_started_helper_is_up_before_the_first_batch_and_parses_it() -> None:
    before = {child.pid for child in multiprocessing.active_children()}
    ahead = ParseAhead(Limits(), workers=1)
    try:
        ahead.start()
        assert ahead.wait_ready(60)
        started = {child.pid for child in multiprocessing.active_children()} - before
        parsed = list(parse_now(ahead, [make_mail(subject=f"report {n}") for n in range(16)]))
        after = {child.pid for child in multiprocessing.active_children()} - before
    finally:
        ahead.close()
    assert len(started) == 1
    assert after == started  # no helper was started for the batch: it went to the one waiting
    assert [p.parsed.subject if p is not None else None for p in parsed] == [
        f"report {n}" for n in range(16)
    ]


def test_with_a_context_the_helper_reads_each_message_as_the_pipeline_would() -> None:
    context = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
    batch = [
        make_mail(subject="Is tutoring outside the platform allowed?", body="Just asking?"),
        make_mail(body="My mentor karan.mentor@example.com asked me to pay on WhatsApp."),
        make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
        *(make_mail(subject=f"report {n}") for n in range(13)),
    ]
    ahead = ParseAhead(Limits(), workers=1, context=context)
    try:
        prepared = list(parse_now(ahead, batch))
    finally:
        ahead.close()
    assert all(p is not None and p.insights is not None for p in prepared)
    for item in prepared:
        assert item is not None and item.insights is not None
        assert item.insights == gather_insights(item.parsed, context)
    first, second, third = (p.insights for p in prepared[:3] if p is not None)
    assert first is not None and first.text.question
    assert second is not None and second.text.mentioned == ("karan.mentor@example.com",)
    assert second.text.suggested_rule is not None
    assert third is not None and third.classification.automated


def test_without_workers_starting_is_nothing_and_every_item_is_left_to_the_pipeline() -> None:
    before = {child.pid for child in multiprocessing.active_children()}
    ahead = ParseAhead(Limits(), workers=0)
    ahead.start()
    assert ahead.wait_ready(0)
    parsed = list(parse_now(ahead, [make_mail(subject=f"report {n}") for n in range(16)]))
    assert {child.pid for child in multiprocessing.active_children()} == before
    assert parsed == [None] * 16


def test_a_message_the_helper_cannot_read_is_still_handed_over_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*_args: object) -> None:
        raise ValueError("a rule met something it cannot read")

    monkeypatch.setattr("intake.imap_parse.gather_insights", fail)
    context = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
    prepared = parse_or_none(make_mail(subject="report"), Limits(), context)
    assert prepared is not None and prepared.parsed.subject == "report"
    assert prepared.insights is None  # the pipeline reads it itself
