"""Wiring: settings in, a ready database, pipeline, outbox and delivery out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from casework.credentials import TokenCommand
from casework.db import is_current, make_engine, make_sessions, upgrade
from casework.desk import Desk
from casework.reminders import make_sweeps
from casework.sweeps import EnforcementSweep
from intake.maildir import MaildirSource
from intake.pipeline import Pipeline, Result
from outbound.caps import DeliveryGate
from outbound.delivery import Deliverer, MaildirTransport, RetryPolicy, Transport
from outbound.outbox import Outbox
from outbound.render import Renderer
from outbound.smtp import SmtpTransport
from scheduler.config import IntakeSource, Settings, SmtpSettings
from scheduler.config import Transport as TransportKind
from scheduler.consumer_lock import ConsumerLock
from scheduler.hygiene import cap_policy, hygiene_limits, suppression_policy

log = logging.getLogger(__name__)


class NotMigrated(Exception):
    """The database schema is behind the code; `safetydesk db upgrade` fixes it."""


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    desk: Desk
    pipeline: Pipeline
    deliverer: Deliverer
    sweeps: tuple[Callable[[datetime], object], ...] = ()

    def poll(self, now: datetime, should_stop: Callable[[], bool] = lambda: False) -> list[Result]:
        """Process what is waiting in the configured mailbox, unless another worker reads it."""
        lock = ConsumerLock(self.engine, mailbox_key(self.settings))
        if not lock.acquire():
            log.info("another worker is reading %s; this one skips its poll", lock.key)
            return []
        try:
            return self._drain(now, should_stop)
        finally:
            lock.release()

    def _drain(self, now: datetime, should_stop: Callable[[], bool]) -> list[Result]:
        settings = self.settings.intake
        if settings.source is IntakeSource.MAILDIR:
            source = MaildirSource(settings.maildir)
            return source.drain(lambda raw, ref: self.pipeline.process(raw, ref, now), should_stop)
        from scheduler.imap_intake import poll_imap

        return poll_imap(self.settings, self.pipeline, self.sessions, now, should_stop)


def mailbox_key(settings: Settings) -> str:
    """The name the database knows the configured mailbox by (cursor, inbound rows, lock)."""
    if settings.intake.source is IntakeSource.MAILDIR:
        return f"maildir:{settings.intake.maildir.resolve()}"
    from scheduler.imap_intake import imap_options

    return imap_options(settings).mailbox_key


def build_transport(settings: Settings) -> Transport:
    outbound = settings.outbound
    if outbound.transport is TransportKind.MAILDIR:
        return MaildirTransport(outbound.maildir)
    return smtp_transport(outbound.smtp)


def smtp_transport(smtp: SmtpSettings) -> SmtpTransport:
    timeout = smtp.timeout.approximate().total_seconds()
    return SmtpTransport(
        host=smtp.host,
        port=smtp.port,
        tls=smtp.tls,
        username=smtp.username,
        password=smtp.password,
        timeout=timeout,
        ca_file=str(smtp.ca_file) if smtp.ca_file else None,
        method=smtp.auth,
        token=TokenCommand(smtp.token_command, timeout) if smtp.token_command else None,
    )


def build_app(
    settings: Settings, *, migrate: bool = False, transport: Transport | None = None
) -> App:
    """Everything the worker and the CLI need, built from the settings alone."""
    engine = make_engine(settings.database.url)
    if migrate:
        upgrade(engine)
    elif not is_current(engine):
        raise NotMigrated(
            f"the database at {engine.url.render_as_string(hide_password=True)} is not at the "
            "current schema; run `safetydesk db upgrade`"
        )
    sessions = make_sessions(engine)
    outbox = Outbox(settings.desk, Renderer())
    desk = Desk(
        desk=settings.desk,
        moderators=settings.moderators,
        policy=settings.policy,
        notices=outbox,
    )
    pipeline = Pipeline(
        sessions,
        desk,
        max_message_bytes=settings.intake.max_message_bytes,
        limits=hygiene_limits(settings),
        suppression=suppression_policy(settings),
    )
    outbound = settings.outbound
    deliverer = Deliverer(
        sessions=sessions,
        transport=transport or build_transport(settings),
        sender=settings.desk.address,
        retry=RetryPolicy(
            max_attempts=outbound.max_attempts,
            first_delay=outbound.retry_after.approximate(),
            max_delay=outbound.retry_max.approximate(),
        ),
        batch_size=outbound.batch_size,
        lease=timedelta(minutes=10),
        gate=DeliveryGate(cap_policy(settings)),
    )
    sweeps: tuple[Callable[[datetime], object], ...] = (
        EnforcementSweep(desk, sessions),
        *make_sweeps(desk, sessions),
    )
    return App(settings, engine, sessions, desk, pipeline, deliverer, sweeps=sweeps)
