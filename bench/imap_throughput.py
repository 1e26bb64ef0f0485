"""Throughput of the IMAP intake: N messages from a local Dovecot (or pymap) into the database.

Usage: .venv/bin/python bench/imap_throughput.py [--messages 2000] [--server dovecot|pymap]
       [--database sqlite|postgres] [--batch-size 200] [--after move|flag]
       [--kind report|automated] [--parse-workers 1] [--messages-per-commit 25] [--cold]
       [--latency-ms 0] [--profile]

Starts its own server on a free loopback port (as the tests do), delivers the messages,
then times one `run_pass` of the intake over them and prints messages per second.

The parse helpers are started and waited for before the clock starts, as a serving worker
starts them when it starts (`ImapIntake.serve`); with --cold they start inside the timed pass,
as under `safetydesk run --once`. With --latency-ms, the intake reaches the server through a
loopback proxy that holds back every chunk by that much each way, as a distant server would.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.latency_proxy import LatencyProxy
from bench.process_cpu import spent_by_kind, take_snapshot
from bench.scratch import bench_settings, machine_reference, scratch_database
from casework.clock import FixedClock
from casework.models import Case, InboundMessage
from intake.imap import ImapIntake
from scheduler.app import build_app
from scheduler.imap_intake import imap_options
from tests.imap_servers import ImapServer, make_server
from tests.mail import make_mail


def corpus(n: int, kind: str = "report") -> list[bytes]:
    """Reports from n different students, some with an attachment, a few replies' worth of text.

    With kind "automated" every message carries Auto-Submitted, so the pipeline records it and
    opens no case: that measures the intake and the pipeline's own path without the casework.
    """
    headers = {"Auto-Submitted": "auto-replied"} if kind == "automated" else None
    messages = []
    for i in range(n):
        attachments = (
            [("screenshot.png", "image/png", secrets.token_bytes(2048))] if i % 10 == 0 else None
        )
        messages.append(
            make_mail(
                sender=f"student{i}@example.com",
                name=f"Student {i}",
                subject=f"Mentor {i % 37} asked me to pay outside the platform",
                body=(
                    f"Hello, my mentor mentor{i % 37}@example.com asked me to pay him directly "
                    "on WhatsApp instead of through eCareerMentor. He said it would be cheaper.\n"
                )
                * 4,
                message_id=f"<bench-{i}-{uuid.uuid4().hex}@client.example>",
                attachments=attachments,
                headers=headers,
            )
        )
    return messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--server", choices=["dovecot", "pymap"], default="dovecot")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--after", choices=["move", "flag"], default="move")
    parser.add_argument("--kind", choices=["report", "automated"], default="report")
    parser.add_argument("--parse-workers", type=int, default=1)
    parser.add_argument("--messages-per-commit", type=int, default=25)
    parser.add_argument(
        "--cold", action="store_true", help="start the parse helpers inside the timed pass"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="one-way delay between intake and server"
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(machine_reference())

    work = Path(tempfile.mkdtemp(prefix="safetydesk-bench-"))
    server = make_server(args.server)
    try:
        with scratch_database(args.database, work) as url:
            return measure(args, server, work, url)
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, server: ImapServer, work: Path, url: str) -> int:
    """One timed pass of the intake over `args.messages` delivered messages; 0 when all went."""
    (work / "imap-password").write_text(server.password)
    delay = args.latency_ms / 1000
    proxy = LatencyProxy(server.host, server.port, delay) if delay else None
    try:
        return measure_through(args, server, work, url, proxy.port if proxy else server.port)
    finally:
        if proxy:
            proxy.close()


def measure_through(
    args: argparse.Namespace, server: ImapServer, work: Path, url: str, port: int
) -> int:
    settings = bench_settings(
        work,
        url,
        intake={
            "source": "imap",
            "imap": {
                "host": server.host,
                "port": port,
                "tls": "none",
                "username": server.username,
                "password_file": str(work / "imap-password"),
                "processed_folder": "Processed",
                "batch_size": args.batch_size,
                "after_processing": args.after,
                "parse_workers": args.parse_workers,
                "messages_per_commit": args.messages_per_commit,
            },
        },
    )
    app = build_app(settings, migrate=True)
    messages = corpus(args.messages, args.kind)
    started = time.perf_counter()
    with server.client() as client:
        for start in range(0, len(messages), 500):
            client.multiappend("INBOX", messages[start : start + 500])
    print(f"delivered {len(messages)} messages in {time.perf_counter() - started:.1f}s")

    clock = FixedClock(datetime(2027, 1, 4, 9, 0, tzinfo=UTC))
    intake = ImapIntake(imap_options(settings), app.pipeline, app.sessions)
    if not args.cold:
        started = time.perf_counter()
        intake.start_helpers()
        if not intake.wait_for_helpers(60):
            print("the parse helpers did not start in 60 s")
            return 1
        print(f"parse helpers up in {time.perf_counter() - started:.2f}s, before the clock")
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    machine_before = take_snapshot()
    if profiler:
        profiler.enable()
    report = intake.run_pass(clock.now)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    machine = spent_by_kind(
        machine_before, take_snapshot(), os.getpid(), server.process.pid if server.process else None
    )
    intake.close()

    with app.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(InboundMessage))
        cases = session.scalar(select(func.count()).select_from(Case))
    left = len(server.uids("INBOX")) if args.after == "move" else 0
    print(
        f"{args.server} -> {args.database}, {args.kind}, batch {args.batch_size}, "
        f"parse workers {args.parse_workers}{' (cold)' if args.cold else ''}, "
        f"{args.messages_per_commit} per commit, "
        f"{f'{args.latency_ms:g} ms each way, ' if args.latency_ms else ''}"
        f"{args.after}: "
        f"{len(report.results)} messages in {elapsed:.2f}s = "
        f"{len(report.results) / elapsed:.0f} messages/s "
        f"({rows} inbound rows, {cases} cases, {left} left in INBOX)\n"
        f"  worker CPU {cpu / max(len(report.results), 1) * 1000:.2f} ms/message "
        f"(= {len(report.results) / max(cpu, 1e-9):.0f} messages/s with a core to itself), "
        f"fetch {report.fetch_seconds:.2f}s, pipeline {report.pipeline_seconds:.2f}s "
        f"({report.pipeline_seconds / max(len(report.results), 1) * 1000:.2f} ms/message), "
        f"move/flag {report.settle_seconds:.2f}s; IMAP side alone "
        f"{len(report.results) / max(report.fetch_seconds + report.settle_seconds, 1e-9):.0f}"
        " messages/s"
    )
    done = max(len(report.results), 1)
    print(
        f"  machine CPU {sum(machine.values()) / elapsed:.2f} of {os.cpu_count()} cores busy: "
        + ", ".join(
            f"{kind} {seconds / done * 1000:.2f}" for kind, seconds in machine.most_common()
        )
        + " ms/message"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(
            35
        )
    app.engine.dispose()
    return 0 if rows == args.messages and left == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
