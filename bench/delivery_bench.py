"""Outbox delivery by SMTP: N queued emails sent to a local aiosmtpd in one `flush`.

Usage: .venv/bin/python bench/delivery_bench.py [--messages 1000] [--database sqlite|postgres]
       [--connection run|message]

`--connection message` opens a new SMTP connection for every email (how the desk sent before a
delivery run shared one connection), for comparison. Prints emails per second, the worker's CPU
per email and how many connections the server saw.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller

from bench.imap_throughput import corpus
from bench.scratch import bench_settings, machine_reference, scratch_database
from intake.pipeline import SourceRef
from outbound.delivery import DeliveryResult, Link
from outbound.smtp import SmtpTransport
from scheduler.app import build_app, smtp_transport
from scheduler.config import Settings
from tests.smtp_server import ScriptedHandler, free_port


@dataclass(frozen=True)
class ConnectionPerMessage:
    """A transport whose every email opens, logs in and closes a connection of its own."""

    smtp: SmtpTransport

    @contextlib.contextmanager
    def connect(self) -> Iterator[Link]:
        yield self.smtp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--connection", choices=["run", "message"], default="run")
    args = parser.parse_args()
    print(machine_reference())

    port = free_port()
    stop, report = multiprocessing.Event(), multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(port, stop, report))
    server.start()
    report.get(timeout=15)  # "ready"
    work = Path(tempfile.mkdtemp(prefix="safetydesk-bench-"))
    try:
        with scratch_database(args.database, work) as url:
            smtp = {"host": "127.0.0.1", "port": port, "tls": "none"}
            outbound = {"transport": "smtp", "batch_size": 200, "smtp": smtp}
            # Caps high enough that none holds mail back: this measures sending.
            hygiene = {"moderator_cap": 10**6, "global_cap_per_hour": 10**6}
            settings = bench_settings(work, url, outbound=outbound, hygiene=hygiene)
            measure(args, settings, lambda: seen(stop, report))
    finally:
        stop.set()
        server.join(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def serve(port: int, stop: Any, report: Any) -> None:
    """The receiving aiosmtpd, in a process of its own so that its CPU is not the worker's."""
    handler = ScriptedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    report.put("ready")
    stop.wait()
    report.put((len(set(handler.peers)), len(handler.received)))
    controller.stop()


def seen(stop: Any, report: Any) -> tuple[int, int]:
    """How many connections the server saw and how many emails it accepted."""
    stop.set()
    result: tuple[int, int] = report.get(timeout=10)
    return result


def measure(
    args: argparse.Namespace, settings: Settings, server: Callable[[], tuple[int, int]]
) -> None:
    transport = smtp_transport(settings.outbound.smtp)
    chosen = ConnectionPerMessage(transport) if args.connection == "message" else transport
    app = build_app(settings, migrate=True, transport=chosen)
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    # Each new report queues two emails: the acknowledgement and the moderator's.
    for uid, raw in enumerate(corpus((args.messages + 1) // 2, "report"), start=1):
        app.pipeline.process(raw, SourceRef(mailbox="INBOX", uidvalidity=1, uid=uid), now)

    started, cpu_started = time.perf_counter(), time.process_time()
    counts = app.deliverer.flush(now)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    sent = counts[DeliveryResult.SENT]
    connections, accepted = server()
    print(
        f"{args.database}, connection per {args.connection}: {sent} emails in {elapsed:.2f}s = "
        f"{sent / elapsed:.0f} emails/s, worker CPU {cpu / sent * 1000:.2f} ms/email; "
        f"the server saw {connections} connections and accepted {accepted}"
    )
    app.engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
