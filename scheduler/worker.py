"""The long-running worker: APScheduler jobs for mailbox, outbox and sweeps, stopped by signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from casework.clock import Clock
from scheduler.app import App, mailbox_key
from scheduler.config import IntakeSource
from scheduler.consumer_lock import ConsumerLock

log = logging.getLogger(__name__)


@dataclass
class Stopper:
    """Set by SIGTERM/SIGINT; jobs check it between messages so the current one finishes."""

    event: threading.Event = field(default_factory=threading.Event)

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s; finishing the current message, then stopping", signal.Signals(signum).name
        )
        self.event.set()

    def stopped(self) -> bool:
        return self.event.is_set()


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[datetime], object]
    every_seconds: float


def jobs_for(app: App, stopper: Stopper) -> list[Job]:
    """The worker's recurring jobs, in the order `run --once` runs them."""
    schedule = app.settings.schedule
    return [
        Job(
            "poll",
            lambda now: app.poll(now, stopper.stopped),
            schedule.poll_interval.approximate().total_seconds(),
        ),
        Job(
            "sweep",
            lambda now: run_sweeps(app, now),
            schedule.sweep_interval.approximate().total_seconds(),
        ),
        Job("flush", app.deliverer.flush, schedule.outbox_interval.approximate().total_seconds()),
    ]


def run_sweeps(app: App, now: datetime) -> None:
    """Time-driven casework; each sweep is idempotent and catches up after downtime."""
    for sweep in app.sweeps:
        sweep(now)


def run_once(app: App, clock: Clock) -> None:
    """Everything waiting, once: poll, sweep, flush (cron, tests, replays)."""
    stopper = Stopper()
    for job in jobs_for(app, stopper):
        job.run(clock.now())


def run_forever(app: App, clock: Clock) -> None:
    """Run the jobs on their intervals until SIGTERM or SIGINT."""
    stopper = Stopper()
    signal.signal(signal.SIGTERM, stopper.stop)
    signal.signal(signal.SIGINT, stopper.stop)
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    jobs = jobs_for(app, stopper)
    consumer: threading.Thread | None = None
    if app.settings.intake.source is IntakeSource.IMAP:
        # The mailbox is read by its own thread that IDLEs; the poll job would only compete.
        from scheduler.imap_intake import start_imap_consumer

        jobs = [job for job in jobs if job.name != "poll"]
        lock = ConsumerLock(app.engine, mailbox_key(app.settings))
        consumer = start_imap_consumer(
            app.settings, app.pipeline, app.sessions, clock, stopper.event, lock
        )
    for job in jobs:
        scheduler.add_job(
            _guarded(job, clock, stopper),
            "interval",
            seconds=max(job.every_seconds, 1.0),
            id=job.name,
            name=job.name,
            next_run_time=clock.now(),
        )
    scheduler.start()
    names = [job.name for job in jobs] + (["imap"] if consumer is not None else [])
    log.info("worker started: %s", ", ".join(names))
    try:
        while not stopper.event.wait(timeout=1.0):
            pass
    finally:
        stopper.event.set()
        if consumer is not None:
            consumer.join(timeout=120)
        scheduler.shutdown(wait=True)
        app.engine.dispose()
        log.info("worker stopped")


def _guarded(job: Job, clock: Clock, stopper: Stopper) -> Callable[[], None]:
    def run() -> None:
        if stopper.stopped():
            return
        try:
            job.run(clock.now())
        except Exception:  # a failing job is logged and retried on its next interval
            log.exception("job %s failed", job.name)

    return run
