"""Timing the reply splitter on the corpus's performance traps (run by hand, not by pytest)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from intake.reply_text import split_reply

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
TRAPS = (
    CORPUS / "github-email_reply_parser" / "email_long_quote.txt",
    CORPUS / "github-email_reply_parser" / "pathological.txt",
)


def measure(path: Path, rounds: int = 20) -> tuple[float, float]:
    text = path.read_bytes().decode("utf-8")
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        split_reply(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main() -> None:
    for path in TRAPS:
        median, worst = measure(path)
        size = path.stat().st_size
        print(
            f"{path.name:24} {size / 1024:8.0f} KB  median {median * 1000:7.2f} ms"
            f"  worst {worst * 1000:7.2f} ms"
        )


if __name__ == "__main__":
    main()
