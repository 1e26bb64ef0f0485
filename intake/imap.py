"""The IMAP mailbox as the desk's intake: batched, exactly-once, with IDLE push and reconnects."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from casework.audit import record_event
from casework.db import transaction
from casework.durations import doubling_delay
from casework.models import AuditEvent
from intake.bounds import Limits
from intake.imap_client import (
    Endpoint,
    FolderState,
    ImapCommandError,
    ImapConnection,
    ImapError,
    ImapLoginError,
    connect,
)
from intake.imap_cursor import (
    advance_cursor,
    already_handled,
    held_from_earlier_uidvalidity,
    quarantined_before,
    read_cursor,
)
from intake.imap_parse import ParseAhead, Parsing
from intake.imap_side import ImapSide
from intake.parse import sha256_of
from intake.pipeline import Outcome, Pending, Pipeline, Result, SourceRef, TemporaryFailure

log = logging.getLogger(__name__)

PROCESSED_KEYWORD = b"$SafetyDeskProcessed"
SEEN = b"\\Seen"
FLAGGED = b"\\Flagged"
# RFC 2177: a client should re-issue IDLE at least every 29 minutes; stay well inside that.
IDLE_RENEW_SECONDS = 25 * 60
# One FETCH of whole bodies carries at most this much, whatever the batch size.
FETCH_BYTES = 64 * 1024 * 1024
LOGIN_REFUSED = "intake.imap.login_refused"
LOGIN_FAILING = "intake.imap.login_failing"
LOGIN_RECOVERED = "intake.imap.login_recovered"

Connector = Callable[[Endpoint], ImapConnection]


@dataclass(frozen=True)
class ImapOptions:
    """Everything the intake needs to know, taken from [intake] and [intake.imap]."""

    endpoint: Endpoint
    folder: str = "INBOX"
    processed_folder: str = "SafetyDesk/Processed"
    quarantine_folder: str = ""
    move: bool = True
    idle: bool = True
    poll_seconds: float = 60.0
    batch_size: int = 200
    max_message_bytes: int = Limits().max_message_bytes
    reconnect_min: float = 1.0
    reconnect_max: float = 300.0
    login_alert_after: int = 3
    parse_workers: int = 1
    messages_per_commit: int = 25
    idle_renew_seconds: float = IDLE_RENEW_SECONDS

    @property
    def mailbox_key(self) -> str:
        """How the database names this folder (inbound rows and the cursor)."""
        return f"imap://{self.endpoint.username}@{self.endpoint.host}/{self.folder}"


@dataclass
class Backoff:
    """Exponential delays with jitter: min * 2^(n-1), capped, scaled by a random 50-100%."""

    minimum: float
    maximum: float
    uniform: Callable[[float, float], float] = random.uniform
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = doubling_delay(self.minimum, self.maximum, self.failures)
        return float(self.uniform(ceiling / 2, ceiling))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class PassReport:
    """What one pass over the folder did."""

    results: list[Result] = field(default_factory=list)
    moved: int = 0
    quarantined_on_server: int = 0
    skipped_known: int = 0
    fetch_seconds: float = 0.0
    pipeline_seconds: float = 0.0
    settle_seconds: float = 0.0

    def add(self, settled: _Settled) -> None:
        self.moved += settled.moved
        self.quarantined_on_server += settled.quarantined
        self.settle_seconds += settled.seconds


@dataclass(frozen=True)
class _Fetched:
    """A batch as read before any of it is processed: what is known of it already, the bytes
    fetched, the UIDs that exist, why the server refused any, and its parsing, under way."""

    batch: Sequence[int]
    recorded: set[int]
    quarantined: set[int]
    raws: dict[int, bytes]
    present: set[int]
    refused: dict[int, str]
    skipped_known: int
    seconds: float
    parsing: Parsing


@dataclass
class _Settlement:
    """What a batch being processed leaves to settle on the server, and the cursor's next place."""

    done: list[int]
    bad: list[int]
    handled_upto: int = 0


@dataclass(frozen=True)
class _Settled:
    """What settling one batch did on the server."""

    moved: int
    quarantined: int
    seconds: float


class ImapIntake:
    """Reads one IMAP folder into the pipeline; keeps its connection between passes."""

    def __init__(
        self,
        options: ImapOptions,
        pipeline: Pipeline,
        sessions: sessionmaker[Session],
        *,
        connector: Connector = connect,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._pipeline = pipeline
        self._sessions = sessions
        self._connector = connector
        self._monotonic = monotonic
        self._connection: ImapConnection | None = None
        self._folders_ready = False
        self._parser = ParseAhead(
            pipeline.limits, options.parse_workers, context=pipeline.classify_context
        )
        # Carried over from earlier processes, so that `run --once` from cron adds up too.
        self.login_failures = refusals_in_a_row(sessions, options.mailbox_key)

    # --- one pass ----------------------------------------------------------------------------

    def run_pass(
        self, now: Callable[[], datetime], should_stop: Callable[[], bool] = lambda: False
    ) -> PassReport:
        """Connect if needed and handle everything waiting; raises ImapError or TemporaryFailure."""
        connection = self._connect(now)
        try:
            return self._drain(connection, now, should_stop)
        except ImapError:
            self._drop()
            raise

    def start_helpers(self) -> None:
        """Start the parse helpers in the background, before the first batch needs them."""
        self._parser.start()

    def wait_for_helpers(self, timeout: float) -> bool:
        """Whether the helpers `start_helpers` began are up within `timeout` seconds."""
        return self._parser.wait_ready(timeout)

    def close(self) -> None:
        self._parser.close()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _drop(self) -> None:
        self._folders_ready = False  # a folder may have gone with the error: check on reconnect
        if self._connection is not None:
            self._connection.abort()
            self._connection = None

    def _connect(self, now: Callable[[], datetime]) -> ImapConnection:
        if self._connection is not None:
            return self._connection
        try:
            connection = self._connector(self.options.endpoint)
        except ImapLoginError as error:
            self._login_failed(error, now())
            raise
        if self.login_failures:
            self._login_recovered(now())
        self._connection = connection
        if not self._folders_ready:
            try:
                if self.options.move:
                    connection.ensure_folder(self.options.processed_folder)
                if self.options.quarantine_folder:
                    connection.ensure_folder(self.options.quarantine_folder)
            except ImapError:
                self._drop()
                raise
            self._folders_ready = True
        return connection

    def _drain(
        self,
        connection: ImapConnection,
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
    ) -> PassReport:
        folder = connection.select(self.options.folder)
        key = self.options.mailbox_key
        with transaction(self._sessions) as session:
            cursor = read_cursor(session, key)
            recognise = held_from_earlier_uidvalidity(session, key, folder.uidvalidity)
        if cursor.uidvalidity and cursor.uidvalidity != folder.uidvalidity:
            log.warning(
                "%s: UIDVALIDITY changed from %d to %d; reading the whole folder again "
                "(messages seen before are recognised by Message-ID and content)",
                key,
                cursor.uidvalidity,
                folder.uidvalidity,
            )
        uids = connection.uids_from(cursor.first_uid_for(folder.uidvalidity))
        size = self.options.batch_size  # at least 1: the configuration refuses less
        batches = [uids[start : start + size] for start in range(0, len(uids), size)]
        report = PassReport()
        with ImapSide() as side:
            self._run_batches(
                connection, folder, batches, now, should_stop, report, side, recognise=recognise
            )
        if report.results:
            log.info(
                "%s: %d messages handled (%d known already); fetch %.2fs, pipeline %.2fs, "
                "move/flag %.2fs",
                key,
                len(report.results),
                report.skipped_known,
                report.fetch_seconds,
                report.pipeline_seconds,
                report.settle_seconds,
            )
        return report

    def _run_batches(
        self,
        connection: ImapConnection,
        folder: FolderState,
        batches: Sequence[Sequence[int]],
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
        report: PassReport,
        side: ImapSide,
        *,
        recognise: bool,
    ) -> None:
        """Process the batches in order while `side` reads the next one and settles the last.

        The connection is only used on `side`'s thread, one step at a time: batch N+1 is read
        while batch N is processed, and batch N is moved or flagged (then the cursor advanced)
        while batch N+1 is processed. A batch is settled only after its groups committed and
        after the batch before it settled.
        """
        ahead: Future[_Fetched] | None = None
        settling: Future[_Settled] | None = None
        try:
            for index, batch in enumerate(batches):
                if should_stop():
                    break
                if ahead is None:
                    fetched = self._read_batch(connection, folder, batch, recognise)
                else:
                    fetched, ahead = ahead.result(), None
                if index + 1 < len(batches):
                    following = batches[index + 1]
                    ahead = side.submit(
                        partial(self._read_batch, connection, folder, following, recognise)
                    )
                report.skipped_known += fetched.skipped_known
                report.fetch_seconds += fetched.seconds
                settlement = _Settlement(sorted(fetched.recorded), sorted(fetched.quarantined))
                started = self._monotonic()
                try:
                    self._process_batch(fetched, folder, now, should_stop, report, settlement)
                finally:
                    report.pipeline_seconds += self._monotonic() - started
                    # Whatever committed is settled even when a later message failed.
                    previous, settling = (
                        settling,
                        side.submit(partial(self._settle, connection, folder, settlement, now())),
                    )
                if previous is not None:
                    report.add(previous.result())
            if ahead is not None:  # stopped before the batch read ahead: it stays in the folder
                ahead.cancel()
            if settling is not None:
                last, settling = settling, None
                report.add(last.result())
        except BaseException as raised:
            if ahead is not None:
                ahead.cancel()
            failure = settling.exception() if settling is not None else None
            if failure is not None and failure is not raised:
                log.warning(
                    "%s: the last batch was not moved or flagged on the server (%s); its "
                    "messages are recorded, and the next pass moves or flags them",
                    self.options.mailbox_key,
                    failure,
                )
            raise

    def _read_batch(
        self, connection: ImapConnection, folder: FolderState, batch: Sequence[int], recognise: bool
    ) -> _Fetched:
        """What the server and the database say of `batch` before any of it is processed.

        With `recognise`, a fetched message still held in quarantine from an earlier
        UIDVALIDITY is known by its bytes and not run again."""
        key = self.options.mailbox_key
        started = self._monotonic()
        with transaction(self._sessions) as session:
            recorded, quarantined = already_handled(session, key, folder.uidvalidity, batch)
        skipped = len(recorded) + len(quarantined)
        todo = [uid for uid in batch if uid not in recorded and uid not in quarantined]
        raws, present, refused = self._fetch(connection, todo)
        if recognise and raws:
            with transaction(self._sessions) as session:
                digests = {uid: sha256_of(raw) for uid, raw in raws.items()}
                carried = quarantined_before(session, key, folder.uidvalidity, digests)
            skipped += len(carried)
            quarantined |= carried
            raws = {uid: raw for uid, raw in raws.items() if uid not in carried}
        seconds = self._monotonic() - started
        # Handed to the parse helpers at once: they parse it while the batch before is processed.
        parsing = self._parser.submit([raws[uid] for uid in batch if uid in raws])
        return _Fetched(
            batch, recorded, quarantined, raws, present, refused, skipped, seconds, parsing
        )

    def _process_batch(
        self,
        fetched: _Fetched,
        folder: FolderState,
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
        report: PassReport,
        settlement: _Settlement,
    ) -> None:
        """Run a read batch through the pipeline in groups, noting in `settlement` what each
        committed group leaves to settle."""
        key = self.options.mailbox_key
        recorded, quarantined, raws = fetched.recorded, fetched.quarantined, fetched.raws
        done, bad = settlement.done, settlement.bad
        # Messages are committed in groups; the cursor passes a UID only once it and every UID
        # before it are settled. A stop leaves the uncommitted group on the server, unread.
        passed = 0
        group: list[tuple[int, Pending]] = []

        def commit_group() -> None:
            results = self._pipeline.process_group([pending for _, pending in group], now)
            for (uid, _), result in zip(group, results, strict=True):
                report.results.append(result)
                (bad if result.outcome is Outcome.QUARANTINED else done).append(uid)
            group.clear()
            settlement.handled_upto = passed

        parsed_ahead = self._parser.results(fetched.parsing)
        for uid in fetched.batch:
            if uid in recorded or uid in quarantined:
                passed = uid
                if not group:
                    settlement.handled_upto = uid
                continue
            if should_stop():
                break
            raw = raws.get(uid)
            source = SourceRef(
                label=f"{key} uid={uid}", mailbox=key, uidvalidity=folder.uidvalidity, uid=uid
            )
            if raw is None and uid in fetched.present:
                # It exists but the server will not hand it over, even on its own: kept in
                # quarantine (and on the server) so that it blocks none behind it. Those
                # before it are committed first: results stay in the mailbox's order.
                if group:
                    commit_group()
                reason = fetched.refused.get(uid, "the server returned no body")
                result = self._pipeline.quarantine(
                    b"", source, now(), "the server did not return the message",
                    ImapCommandError(f"{key}: UID {uid}: {reason}"),
                )  # fmt: skip
                report.results.append(result)
                bad.append(uid)
            elif raw is not None:
                ahead = next(parsed_ahead)
                if ahead is None:  # parsed (and refused, if it must be) in the pipeline
                    group.append((uid, Pending(raw, source)))
                else:
                    group.append((uid, Pending(raw, source, ahead.parsed, ahead.insights)))
            # A UID whose message vanished (expunged by someone else) is simply passed.
            passed = uid
            if not group:
                settlement.handled_upto = uid
            elif len(group) >= self.options.messages_per_commit:
                commit_group()
        else:
            if group:
                commit_group()

    def _fetch(
        self, connection: ImapConnection, uids: Sequence[int]
    ) -> tuple[dict[int, bytes], set[int], dict[int, str]]:
        """The messages, the UIDs that exist, and why the server refused any of them.

        Bodies come in one FETCH per group, oversized ones in part. A group the server refuses,
        or a message missing from its answer, is asked for once more on its own.
        """
        if not uids:
            return {}, set(), {}
        limit = self.options.max_message_bytes
        sizes = connection.sizes(uids)
        small = [uid for uid in uids if uid in sizes and sizes[uid] <= limit]
        raws: dict[int, bytes] = {}
        refused: dict[int, str] = {}
        for group in _by_total_size(small, sizes, FETCH_BYTES):
            try:
                raws.update(connection.bodies(group))
            except ImapCommandError as error:
                log.warning(
                    "FETCH of %d messages refused (%s); asking one by one", len(group), error
                )
            for uid in group:
                if uid not in raws:
                    try:
                        raws.update(connection.bodies([uid]))
                    except ImapCommandError as error:
                        refused[uid] = str(error)
        for uid in uids:
            if uid in sizes and sizes[uid] > limit:
                log.info(
                    "uid %d is %d bytes, over the %d limit: reading its start",
                    uid,
                    sizes[uid],
                    limit,
                )
                partial = connection.head_and_start(uid, limit)
                if partial is not None:
                    raws[uid] = partial
        # A message expunged before the size FETCH is gone and its UID passed over; one that
        # vanished between the two FETCHes is retried on the next pass (it will be gone then).
        return raws, set(sizes), refused

    def _settle(
        self,
        connection: ImapConnection,
        folder: FolderState,
        settlement: _Settlement,
        now: datetime,
    ) -> _Settled:
        """Move or flag a batch's settled messages, then advance the cursor past them."""
        started = self._monotonic()
        moved = quarantined = 0
        done, bad = settlement.done, settlement.bad
        if done:
            if self.options.move:
                connection.move(done, self.options.processed_folder)
                moved = len(done)
            else:
                connection.add_flags(done, self._processed_flags(folder))
        if bad:
            if self.options.quarantine_folder:
                connection.move(bad, self.options.quarantine_folder)
                quarantined = len(bad)
            else:
                connection.add_flags(bad, [FLAGGED])
        if settlement.handled_upto:
            with transaction(self._sessions) as session:
                key = self.options.mailbox_key
                advance_cursor(session, key, folder.uidvalidity, settlement.handled_upto, now)
        return _Settled(moved, quarantined, self._monotonic() - started)

    @staticmethod
    def _processed_flags(folder: FolderState) -> list[bytes]:
        if b"\\*" in folder.permanent_flags:
            return [SEEN, PROCESSED_KEYWORD]
        return [SEEN]

    # --- login trouble, for the operator -----------------------------------------------------

    def _login_failed(self, error: ImapLoginError, now: datetime) -> None:
        self.login_failures += 1
        alert = self.login_failures == self.options.login_alert_after
        if alert:
            log.error(
                "IMAP login refused %d times in a row (%s); the desk reads no mail until "
                "the [intake.imap] login (username, password or token command) is fixed",
                self.login_failures,
                error,
            )
        else:
            log.warning("IMAP login refused (%d): %s", self.login_failures, error)
        account = self.options.mailbox_key
        try:
            with transaction(self._sessions) as session:
                record_event(session, now, LOGIN_REFUSED, account=account, error=str(error)[:500])
                if alert:
                    record_event(
                        session,
                        now,
                        LOGIN_FAILING,
                        account=account,
                        failures=self.login_failures,
                        error=str(error)[:500],
                    )
        except Exception:  # the database may be down too; the log line stands
            log.exception("could not record the IMAP login problem")

    def _login_recovered(self, now: datetime) -> None:
        if self.login_failures >= self.options.login_alert_after:
            log.info("IMAP login accepted again after %d refusals", self.login_failures)
        try:
            with transaction(self._sessions) as session:
                record_event(session, now, LOGIN_RECOVERED, account=self.options.mailbox_key)
        except Exception:
            log.exception("could not record the IMAP login recovery")
        self.login_failures = 0

    # --- the long-running loop ---------------------------------------------------------------

    def serve(
        self,
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
        wait: Callable[[float], bool],
        *,
        backoff: Backoff | None = None,
    ) -> None:
        """Drain, then wait for mail (IDLE or poll), until `should_stop`; reconnects on errors.

        `wait(seconds)` sleeps and returns True when the worker is being stopped.
        """
        backoff = backoff or Backoff(self.options.reconnect_min, self.options.reconnect_max)
        self.start_helpers()  # while the first connection is made
        try:
            while not should_stop():
                try:
                    report = self.run_pass(now, should_stop)
                    backoff.reset()
                    if should_stop():
                        break
                    # Mail that arrived during a busy pass may have been announced in the
                    # answers to its FETCH or MOVE, where IDLE never sees it: look again first.
                    if not (report.results or report.skipped_known):
                        self.wait_for_mail(should_stop, wait)
                    continue
                except ImapLoginError:
                    delay = max(backoff.next_delay(), self.options.reconnect_min)
                except ImapError as error:
                    delay = backoff.next_delay()
                    log.warning("IMAP: %s; reconnecting in %.1fs", error, delay)
                except (TemporaryFailure, SQLAlchemyError) as error:
                    delay = backoff.next_delay()
                    log.warning("database unavailable (%s); retrying in %.1fs", error, delay)
                    self._drop()
                except Exception:  # a bug must not end the intake: log it, back off, go on
                    delay = backoff.next_delay()
                    log.exception("IMAP intake pass failed; retrying in %.1fs", delay)
                    self._drop()
                if wait(delay):
                    break
        finally:
            self.close()

    def wait_for_mail(self, should_stop: Callable[[], bool], wait: Callable[[float], bool]) -> None:
        """Return when new mail may be there: on an IDLE push, or when the poll interval is up."""
        connection = self._connection
        if connection is None:
            return
        if not (self.options.idle and connection.has("IDLE")):
            wait(self.options.poll_seconds)
            return
        limit = min(self.options.poll_seconds, self.options.idle_renew_seconds)
        deadline = self._monotonic() + limit
        connection.idle_start()
        try:
            while not should_stop():
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    break
                responses = connection.idle_wait(min(remaining, 1.0))
                if any(_announces_mail(r) for r in responses):
                    break
        finally:
            try:
                connection.idle_stop()
            except ImapError:
                self._drop()
                raise


def _by_total_size(uids: Sequence[int], sizes: dict[int, int], budget: int) -> Iterator[list[int]]:
    """`uids` in order, cut into groups of at most `budget` bytes (a bigger one goes alone)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        if group and total + sizes[uid] > budget:
            yield group
            group, total = [], 0
        group.append(uid)
        total += sizes[uid]
    if group:
        yield group


def _announces_mail(response: object) -> bool:
    return isinstance(response, tuple) and any(part in (b"EXISTS", b"RECENT") for part in response)


def refusals_in_a_row(sessions: sessionmaker[Session], account: str) -> int:
    """Refused logins to `account` recorded since its last accepted one (0 if unknown)."""
    try:
        with sessions() as session:
            recent = session.execute(
                select(AuditEvent.kind, AuditEvent.detail)
                .where(AuditEvent.kind.in_([LOGIN_REFUSED, LOGIN_RECOVERED]))
                .order_by(AuditEvent.id.desc())
                .limit(500)
            ).all()
    except SQLAlchemyError:  # the database is down: the pass will say so
        return 0
    refused = 0
    for kind, detail in recent:
        if detail.get("account") != account:
            continue
        if kind == LOGIN_RECOVERED:
            break
        refused += 1
    return refused


def login_problem(sessions: sessionmaker[Session]) -> AuditEvent | None:
    """The worker's latest report of failing IMAP logins, unless it has recovered since."""
    with sessions() as session:
        latest = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.kind.in_([LOGIN_FAILING, LOGIN_RECOVERED]))
            .order_by(AuditEvent.id.desc())
            .limit(1)
        ).first()
    return latest if latest is not None and latest.kind == LOGIN_FAILING else None
