"""Wiring the IMAP intake into the app, the worker and `safetydesk check`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from casework.clock import Clock
from casework.credentials import TokenCommand
from intake.imap import ImapIntake, ImapOptions, login_problem
from intake.imap_client import Endpoint, ImapError, ImapLoginError, ImapTlsError, connect
from intake.imap_cursor import Cursor, read_cursor
from intake.pipeline import Pipeline, Result
from scheduler.config import AfterProcessing, Settings
from scheduler.consumer_lock import ConsumerLock, LockWatch

log = logging.getLogger(__name__)


def imap_options(settings: Settings) -> ImapOptions:
    """The intake's options from [intake] and [intake.imap]."""
    imap = settings.intake.imap
    timeout = imap.timeout.approximate().total_seconds()
    return ImapOptions(
        endpoint=Endpoint(
            host=imap.host,
            port=imap.port,
            tls=imap.tls,
            username=imap.username,
            password=imap.password,
            timeout=timeout,
            ca_file=str(imap.ca_file) if imap.ca_file else "",
            method=imap.auth,
            token=TokenCommand(imap.token_command, timeout) if imap.token_command else None,
        ),
        folder=imap.folder,
        processed_folder=imap.processed_folder,
        quarantine_folder=imap.quarantine_folder,
        move=imap.after_processing is AfterProcessing.MOVE,
        idle=imap.idle,
        poll_seconds=imap.poll_interval.approximate().total_seconds(),
        batch_size=imap.batch_size,
        max_message_bytes=settings.intake.max_message_bytes,
        reconnect_min=imap.reconnect_min.approximate().total_seconds(),
        reconnect_max=imap.reconnect_max.approximate().total_seconds(),
        login_alert_after=imap.login_alert_after,
        parse_workers=imap.parse_workers,
        messages_per_commit=imap.messages_per_commit,
    )


def poll_imap(
    settings: Settings,
    pipeline: Pipeline,
    sessions: sessionmaker[Session],
    now: datetime,
    should_stop: Callable[[], bool],
) -> list[Result]:
    """One non-blocking pass (`run --once`, the poll job): connect, drain, log out."""
    intake = ImapIntake(imap_options(settings), pipeline, sessions)
    try:
        return intake.run_pass(lambda: now, should_stop).results
    finally:
        intake.close()


# How often the mailbox thread makes sure its PostgreSQL lock is still held (one round trip).
LOCK_CHECK_SECONDS = 1.0


def start_imap_consumer(
    settings: Settings,
    pipeline: Pipeline,
    sessions: sessionmaker[Session],
    clock: Clock,
    stop: threading.Event,
    lock: ConsumerLock,
    *,
    lock_check_seconds: float = LOCK_CHECK_SECONDS,
) -> threading.Thread:
    """The worker's mailbox thread: drain, IDLE (or poll), repeat, until `stop` is set.

    It reads only while it holds `lock`. While another worker reads the mailbox, or the database
    cannot be asked, it stands by and tries again every poll interval. If the lock goes with its
    database connection, it stops reading and stands by again: another worker may have taken
    over.
    """
    options = imap_options(settings)

    def run() -> None:
        standing_by = ""
        try:
            while not stop.is_set():
                why, level = _take(lock)
                if why:
                    if why != standing_by:
                        log.log(level, "%s; standing by", why)
                    standing_by = why
                    if stop.wait(options.poll_seconds):
                        return
                    continue
                if standing_by:
                    log.info("taking over %s", lock.key)
                standing_by = ""
                if not _read_while_held(
                    options, pipeline, sessions, clock, stop, lock, lock_check_seconds
                ):
                    lock.release()
                    standing_by = f"lost the lock on {lock.key} with its database connection"
                    log.error("%s; another worker may read it now; standing by", standing_by)
        except Exception:  # the thread must say why it ended
            log.exception("IMAP intake stopped by an unexpected error")
            stop.set()
        finally:
            lock.release()

    thread = threading.Thread(target=run, name="imap-intake", daemon=True)
    thread.start()
    return thread


def _take(lock: ConsumerLock) -> tuple[str, int]:
    """Take `lock`; empty when taken, else why this worker must stand by (and how loudly)."""
    try:
        if lock.acquire():
            return "", logging.INFO
    except SQLAlchemyError as error:
        why = f"database unavailable, so {lock.key} is not read ({type(error).__name__})"
        return why, logging.WARNING
    return f"another worker is reading {lock.key}", logging.INFO


def _read_while_held(
    options: ImapOptions,
    pipeline: Pipeline,
    sessions: sessionmaker[Session],
    clock: Clock,
    stop: threading.Event,
    lock: ConsumerLock,
    check_seconds: float,
) -> bool:
    """Serve the mailbox until `stop`; False when the lock was lost on the way."""
    watch = LockWatch(lock, check_seconds, time.monotonic)
    intake = ImapIntake(options, pipeline, sessions)
    intake.serve(clock.now, lambda: stop.is_set() or watch.is_lost(), stop.wait)
    return not watch.lost


def check_imap(
    settings: Settings, sessions: sessionmaker[Session] | None = None
) -> tuple[bool, str]:
    """Log in and examine the folder; also report login failures the worker has recorded."""
    options = imap_options(settings)
    endpoint = options.endpoint
    where = (
        f"{endpoint.username} at {endpoint.host}:{endpoint.port} "
        f"({endpoint.tls}, {endpoint.method.value})"
    )
    worker_note = ""
    cursor: Cursor | None = None
    if sessions is not None:
        try:
            problem = login_problem(sessions)
            with sessions() as session:
                cursor = read_cursor(session, options.mailbox_key)
        except Exception:  # the database check reports database trouble
            problem = None
        if problem is not None:
            worker_note = (
                f"; the worker reported {problem.detail.get('failures', '?')} refused logins "
                f"in a row at {problem.at:%Y-%m-%d %H:%M} UTC"
            )
    try:
        connection = connect(endpoint)
    except ImapLoginError as error:
        return False, f"{where}: {error}{worker_note}"
    except ImapTlsError as error:
        return False, f"{where}: {error}"
    except ImapError as error:
        return False, f"{where}: {error}"
    try:
        state = connection.select(options.folder, readonly=True)
        features = [c for c in ("IDLE", "MOVE", "UIDPLUS") if connection.has(c)]
        missing = [
            name
            for name in (
                options.processed_folder if options.move else "",
                options.quarantine_folder,
            )
            if name and not connection.folder_exists(name)
        ]
    except ImapError as error:
        return False, f"{where}: {error}"
    finally:
        connection.close()
    detail = (
        f"{where}: login accepted, {options.folder} has {state.exists} messages, "
        f"server offers {', '.join(features) or 'none of IDLE, MOVE, UIDPLUS'}"
    )
    if missing:
        detail += f"; will create {', '.join(missing)}"
    if cursor is not None and cursor.uidvalidity == 0 and state.exists:
        # The first run reads the whole folder: every message in it opens a case or is
        # answered. Said here so that an operator pointing the desk at an old mailbox knows.
        detail += (
            f"; not read by the desk yet: the first run handles all {state.exists} messages "
            f"in {options.folder} (move old mail elsewhere first to start from new mail)"
        )
    if worker_note:
        return False, detail + worker_note + " (login works now; restart the worker)"
    return True, detail
