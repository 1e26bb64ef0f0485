"""A serving worker over a long run: its memory and how soon it records each wave of mail.

Usage: .venv/bin/python bench/imap_soak.py [--waves 20] [--per-wave 500]
       [--database sqlite|postgres] [--kind report|automated] [--outbox-interval PT15S]

Starts its own Dovecot on a free loopback port and `safetydesk run` as a process of its own,
serving as in production (IDLE, the parse helper, outbound delivery to a Maildir, the
scheduler's sweeps), then delivers waves of mail one after another. For each wave it prints
how long the worker took to record all of it, counted from the wave's last APPEND, and the
resident memory (VmRSS) of the worker and of its children (the parse helper). A worker that
kept what it had handled would grow wave after wave; one that does not levels off after the
first few. On PostgreSQL it then prints the tables the server read by sequential scans.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, func, select, text

from bench.imap_throughput import corpus
from bench.scratch import machine_reference, scratch_database
from casework.db import make_engine, upgrade
from casework.models import InboundMessage, MailboxCursor
from tests.imap_servers import ImapServer, make_server, write_worker_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--per-wave", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--kind", choices=["report", "automated"], default="report")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a wave")
    parser.add_argument(
        "--outbox-interval",
        default="PT15S",
        help="[schedule] outbox_interval: how often the worker delivers (PT1H: not during the run)",
    )
    args = parser.parse_args()
    print(machine_reference())

    work = Path(tempfile.mkdtemp(prefix="safetydesk-soak-"))
    server = make_server("dovecot")
    try:
        with scratch_database(args.database, work) as url:
            return soak(args, server, work, url)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def soak(args: argparse.Namespace, server: ImapServer, work: Path, url: str) -> int:
    """Deliver the waves to a serving worker; 0 when every wave was recorded in time."""
    engine = make_engine(url)
    upgrade(engine)
    config = write_worker_config(
        work, server, url, schedule={"outbox_interval": args.outbox_interval}
    )
    with open(work / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        print(f"{args.waves} waves of {args.per_wave} {args.kind} messages into {args.database}")
        print("wave  recorded  seconds after last APPEND  worker RSS  children RSS")
        recorded = 0
        for wave in range(1, args.waves + 1):
            mails = corpus(args.per_wave, args.kind)
            with server.client() as client:
                for start in range(0, len(mails), 250):
                    client.multiappend("INBOX", mails[start : start + 250])
            appended = time.perf_counter()
            recorded += len(mails)
            # The cursor (a row per folder) is cheap to ask; a count of the records, once the
            # cursor says the wave is in, would cost the server a scan that grows every wave.
            while handled(engine) < recorded:
                if worker.poll() is not None or time.perf_counter() - appended > args.timeout:
                    print(f"wave {wave} was not recorded; the worker's log ends:")
                    print((work / "worker.log").read_text(errors="replace")[-2000:])
                    return 1
                time.sleep(0.02)
            took = time.perf_counter() - appended
            records = count(engine)
            if records != recorded:
                print(f"wave {wave}: {records} records for {recorded} messages")
                return 1
            own, children = resident_kib(worker.pid)
            print(f"{wave:4}  {recorded:8}  {took:24.2f}  {own / 1024:7.1f} MiB  "
                  f"{children / 1024:9.1f} MiB")  # fmt: skip
        if engine.dialect.name == "postgresql":
            print_sequential_scans(engine)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        engine.dispose()
    return 0


def print_sequential_scans(engine: Engine) -> None:
    """The tables PostgreSQL read by sequential scans during the run: a lookup planned for a
    tiny table shows here as many scans and many rows (the soak's own check after each wave
    adds one scan of `inbound_messages` a wave)."""
    query = text(
        "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables"
        " WHERE seq_tup_read > 0 ORDER BY seq_tup_read DESC"
    )
    time.sleep(1)  # the server publishes its counters about once a second
    with engine.connect() as connection:
        print("sequential scans (rows read):", ", ".join(
            f"{table} {scans} ({rows:,})" for table, scans, rows in connection.execute(query)
        ))  # fmt: skip


def handled(engine: Engine) -> int:
    """The highest UID the worker has handled: on a new mailbox, the messages handled."""
    with engine.connect() as connection:
        return int(connection.scalar(select(func.max(MailboxCursor.last_uid))) or 0)


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(InboundMessage)) or 0)


def resident_kib(pid: int) -> tuple[int, int]:
    """VmRSS of `pid` and the sum of its descendants', in KiB."""
    own = _vm_rss(pid)
    children = sum(sum(resident_kib(child)) for child in _children(pid))
    return own, children


def _vm_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


if __name__ == "__main__":
    raise SystemExit(main())
