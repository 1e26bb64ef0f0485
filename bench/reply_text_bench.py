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


def measure_text(text: str, rounds: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        split_reply(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main() -> None:
    for path in TRAPS:
        median, worst = measure(path)
        report(path.name, path.stat().st_size, median, worst)
    # Worst cases: nothing ends the scan early. The 750 KB line of quote markers turned into
    # letters, and 750 KB of ordinary unquoted prose lines starting with "On".
    one_line = TRAPS[0].read_bytes().decode("utf-8").replace(">", "x")
    prose = "On Monday he asked me to pay him outside the platform, again and again\n" * 11000
    for label, text in (
        ("750 KB without > markers", one_line),
        ("750 KB of 'On ...' prose", prose),
    ):
        median, worst = measure_text(text)
        report(label, len(text), median, worst)


def report(label: str, size: int, median: float, worst: float) -> None:
    print(
        f"{label:28} {size / 1024:6.0f} KB  median {median * 1000:7.2f} ms"
        f"  worst {worst * 1000:7.2f} ms"
    )


if __name__ == "__main__":
    main()
