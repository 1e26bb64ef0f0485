"""Parse-time figures for the corpus and for adversarial messages (docs/hygiene.md quotes them).

Run from the repository root: `.venv/bin/python bench/parse_times.py [CORPUS_DIR]`.
Times are wall-clock on this machine; nothing here is asserted by the test suite.
"""

from __future__ import annotations

import base64
import contextlib
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

from casework.cases import _ADDRESS as CASE_ADDRESS
from intake.bounces import read_bounce
from intake.bounds import BoundedParser, Limits, MessageRefused, mime_depth, prescan
from intake.classify import ClassifyContext, classify
from intake.parse import parse_message

CONTEXT = ClassifyContext("mentor4u@ecareermentor.in", "ecareermentor.in")
LIMITS = Limits()
SKIP = {"LICENSE", "LICENSE.txt", "NOTICE.txt", "README.md", "SHA256SUMS"}
HEAD = b"From: a@example.com\nTo: mentor4u@ecareermentor.in\nSubject: bench\nMIME-Version: 1.0\n"


def nested(depth: int) -> bytes:
    opened = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n'.encode() for n in range(depth)
    )
    closed = b"".join(f"--b{n}--\n".encode() for n in reversed(range(depth)))
    return HEAD + opened + b"Content-Type: text/plain\n\nbottom\n" + closed


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--p\nContent-Type: text/plain\n\npart\n" for _ in range(count))
    return HEAD + b'Content-Type: multipart/mixed; boundary="p"\n\n' + parts + b"--p--\n"


def big_attachment(size: int) -> bytes:
    data = base64.encodebytes(b"\x00" * size)
    return (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: text/plain\n\nsee\n'
        + b"--a\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        + b'Content-Disposition: attachment; filename="x.bin"\n\n'
        + data
        + b"--a--\n"
    )


ADVERSARIAL: dict[str, Callable[[], bytes]] = {
    "nesting 20 (at the default limit)": lambda: nested(20),
    "nesting 5000 (refused by pre-scan)": lambda: nested(5000),
    "10,000 sibling parts": lambda: many_parts(10_000),
    "20 boundaries, then 1,000,000 stray delimiter lines": lambda: nested(20).replace(
        b"bottom\n", b"bottom\n" + b"--zz\n" * 1_000_000
    ),
    "header block 200 KB (under the limit)": lambda: (
        HEAD + b"".join(f"X-H-{n}: {'v' * 90}\n".encode() for n in range(2000)) + b"\nbody\n"
    ),
    "header block 2 MB (refused by pre-scan)": lambda: (
        HEAD + b"".join(f"X-H-{n}: {'v' * 90}\n".encode() for n in range(20000)) + b"\nbody\n"
    ),
    "one 10 MB line, no newline": lambda: HEAD + b"\n" + b"y" * 10_000_000,
    "20 MB base64 attachment": lambda: big_attachment(20 * 1024 * 1024),
    "10,000 encoded words in Subject": lambda: (
        HEAD.replace(b"Subject: bench", b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 10_000))
        + b"\nbody\n"
    ),
    "100,000 encoded words in Subject": lambda: (
        HEAD.replace(b"Subject: bench", b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 100_000))
        + b"\nbody\n"
    ),
}


def mentioned_addresses(text: str) -> list[str]:
    """What casework.cases does to list the addresses a report mentions."""
    return list(CASE_ADDRESS.findall(text))


def timed(raw: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        prescan(raw, LIMITS)
        message = parse_message(
            raw,
            max_bytes=LIMITS.max_message_bytes,
            max_attachment_bytes=LIMITS.max_attachment_bytes,
        )
        verdict = classify(message, CONTEXT)
        outcome = f"{verdict.verdict.value}: {verdict.rule}"
    except MessageRefused as error:
        outcome = f"refused: {error}"
    return time.perf_counter() - start, outcome


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/corpus")
    files = sorted(
        p
        for p in corpus.rglob("*")
        if p.is_file() and p.name not in SKIP and p.suffix not in {".json", ".tsv"}
    )
    results = sorted(((*timed(p.read_bytes()), p) for p in files), reverse=True)
    total = sum(t for t, _, _ in results)
    print(
        f"corpus: {len(files)} files, total {total:.2f} s, mean {1000 * total / len(files):.1f} ms"
    )
    for seconds, outcome, path in results[:5]:
        print(f"  {1000 * seconds:8.1f} ms  {path.relative_to(corpus)} ({outcome[:50]})")
    print("adversarial (pre-scan + parse + classify, in-process):")
    for name, build in ADVERSARIAL.items():
        raw = build()
        scan = time.perf_counter()
        with contextlib.suppress(MessageRefused):
            prescan(raw, LIMITS)
        scan = time.perf_counter() - scan
        depth = mime_depth(raw, stop_above=LIMITS.max_mime_depth)
        seconds, outcome = timed(raw)
        over = "+" if depth > LIMITS.max_mime_depth else ""
        print(
            f"  {1000 * seconds:8.1f} ms  {name} [{len(raw) / 1e6:.1f} MB, depth {depth}{over}, "
            f"pre-scan {1000 * scan:.1f} ms] -> {outcome[:70]}"
        )
    print("worker-side reading of hostile text (runs outside the parser process):")
    hostile = {
        "bounce with a 1 MB run of letters": "a" * 1_000_000,
        "bounce with 1 MB of blank lines": "\n" * 1_000_000,
        "bounce with a 1 MB Final-Recipient": "Final-Recipient: rfc822; " + "b" * 1_000_000,
    }
    for name, body in hostile.items():
        raw = b"From: MAILER-DAEMON@mx.example\nReturn-Path: <>\nSubject: x\n\n" + body.encode()
        message = parse_message(
            raw,
            max_bytes=LIMITS.max_message_bytes,
            max_attachment_bytes=LIMITS.max_attachment_bytes,
        )
        start = time.perf_counter()
        read_bounce(message, "ecareermentor.in")
        mentioned = time.perf_counter()
        mentioned_addresses(body)
        end = time.perf_counter()
        print(
            f"  {1000 * (mentioned - start):8.1f} ms  read_bounce, "
            f"{1000 * (end - mentioned):6.1f} ms  addresses mentioned: {name}"
        )
    bounded = BoundedParser(Limits(parse_timeout=30))
    sample = (corpus / "cpython-email" / "msg_02.txt").read_bytes()
    start = time.perf_counter()
    bounded.parse(sample)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(100):
        bounded.parse(sample)
    each = (time.perf_counter() - start) / 100
    bounded.close()
    print(
        f"child-process parse: first call {1000 * first:.0f} ms (starts the child), "
        f"then {1000 * each:.2f} ms per small message"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
