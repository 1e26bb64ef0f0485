"""Every inbound message kept whole or not at all: dedupe, classify, casework or quarantine."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from casework.audit import record_event
from casework.cases import (
    add_follow_up,
    answer_caseless_reply,
    caseless_mail_answered,
    open_case,
)
from casework.db import transaction
from casework.desk import Desk
from casework.enforcement import record_appeal
from casework.held_rows import holding_rows
from casework.ids_ahead import IdsAhead
from casework.inbound import AttachmentFacts, InboundRecord, insert_inbound
from casework.models import (
    Case,
    Disposition,
    InboundMessage,
    Party,
    Person,
    QuarantineEntry,
)
from casework.people import count_new_ahead, read_people_ahead
from casework.read_ahead import reading_ahead
from casework.routing import Route, route_reply
from casework.suppressions import SuppressionPolicy, record_bounce, record_complaint
from intake.bounces import read_bounce
from intake.bounds import BoundedParser, Limits, MessageRefused
from intake.classify import Classification, ClassifyContext, Verdict
from intake.imap_cursor import source_label
from intake.insights import Insights, gather_insights
from intake.moderator_mail import handle_moderator_mail, judge_parsed_sender
from intake.parse import ParsedMessage, sha256_of
from intake.seen import find_seen, read_seen_ahead, unseen_ahead

log = logging.getLogger(__name__)

_CASES = cast(Table, Case.__table__)
_INBOUND = cast(Table, InboundMessage.__table__)
_PEOPLE = cast(Table, Person.__table__)


class TemporaryFailure(Exception):
    """The message could not be handled now (database unavailable); try it again later."""


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class SourceRef:
    """Where a message came from: a mailbox UID (IMAP, Maildir key) or a file/stdin label.

    `quarantined` is the quarantine entry a replayed message comes from: failing again, it
    updates that entry instead of making a second one.
    """

    label: str = ""
    mailbox: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    quarantined: int | None = None


@dataclass(frozen=True)
class Pending:
    """A message waiting to be handled: its bytes, where it came from, and its parse if done."""

    raw: bytes
    source: SourceRef
    parsed: ParsedMessage | None = None
    insights: Insights | None = None  # what a parse helper read from `parsed` alone


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    inbound_id: int | None = None
    case_id: int | None = None
    disposition: Disposition | None = None
    reason: str = ""
    quarantine_id: int | None = None


@dataclass(frozen=True)
class Ready:
    """A parsed message of a group: its place in the group, and what was read of it."""

    index: int
    source: SourceRef
    parsed: ParsedMessage
    insights: Insights


class Pipeline:
    """The path of every inbound message, whatever mailbox it came from."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        desk: Desk,
        *,
        max_message_bytes: int,
        limits: Limits | None = None,
        suppression: SuppressionPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._desk = desk
        self._max_bytes = max_message_bytes
        self.limits = limits or Limits(max_message_bytes=max_message_bytes, parse_timeout=0)
        self._parser = BoundedParser(self.limits)
        self._suppression = suppression or SuppressionPolicy()
        self.classify_context = ClassifyContext(
            desk_address=desk.desk.address.lower(), desk_domain=desk.desk.domain
        )
        self._ids = IdsAhead()

    def process(
        self,
        raw: bytes,
        source: SourceRef,
        now: datetime,
        parsed: ParsedMessage | None = None,
        insights: Insights | None = None,
    ) -> Result:
        """Handle one message; never raises for bad mail, raises TemporaryFailure for outages.

        `parsed` is `raw` already parsed under this pipeline's `limits` (done off the database
        path by a bulk reader), and `insights` what was read from it there; without them the
        message is parsed and read here, in the bounded parser.
        """
        if parsed is None:
            parsed_now = self._parse(raw, source, now)
            if isinstance(parsed_now, Result):
                return parsed_now
            parsed = parsed_now
        try:
            try:
                with transaction(self._sessions) as session:
                    return self._handle(session, parsed, source, now, insights)
            except IntegrityError as error:
                # Another reader committed this very mailbox UID first (a worker whose lock
                # went with its connection, before it noticed): handled once, by them.
                earlier = self._recorded_meanwhile(source)
                if earlier is not None:
                    return earlier
                # Another writer (`safetydesk ingest` beside the IMAP worker, say) added a row
                # this message also adds, such as its sender, between our lookup and our
                # insert. Nothing of this message was kept: once more, it finds their row.
                label = _describe_source(source)
                log.info("%s met a concurrent write, trying it again: %s", label, error.orig)
                with transaction(self._sessions) as session:
                    return self._handle(session, parsed, source, now, insights)
        except IntegrityError as error:
            return self.quarantine(raw, source, now, "database refused the message", error)
        except (OperationalError, DBAPIError) as error:
            if _is_outage(error):
                raise TemporaryFailure(f"database unavailable: {error.orig}") from error
            return self.quarantine(raw, source, now, "database refused the message", error)
        except Exception as error:
            return self.quarantine(raw, source, now, "processing failed", error)

    def process_group(
        self, items: Sequence[Pending], now: Callable[[], datetime]
    ) -> Iterator[Result]:
        """Handle several messages under one commit; each result as `process` would give it.

        The group's rows are committed together, so each message is kept whole or not at all.
        Should any message fail, or the commit, nothing of the group is kept and every message
        is handled again by `process`, in its own transaction: the failing one is quarantined
        alone and blocks none of the others. Results come in order, each once it is committed;
        a database outage raises TemporaryFailure, after the results committed before it.
        """
        parses = [item.parsed or self._parse(item.raw, item.source, now()) for item in items]
        together = [
            (index, item, parsed)
            for index, (item, parsed) in enumerate(zip(items, parses, strict=True))
            if isinstance(parsed, ParsedMessage)
        ]
        handled = self._handle_together(together, now) if len(together) > 1 else {}
        for index, (item, parsed) in enumerate(zip(items, parses, strict=True)):
            if isinstance(parsed, Result):  # refused by the parser, already quarantined
                yield parsed
            elif index in handled:
                yield handled[index]
            else:
                yield self.process(item.raw, item.source, now(), parsed, item.insights)

    def _handle_together(
        self,
        together: Sequence[tuple[int, Pending, ParsedMessage]],
        now: Callable[[], datetime],
    ) -> dict[int, Result]:
        """The results of `together` by index, all committed at once; none when the group
        failed (then nothing of it was kept)."""
        handled: dict[int, Result] = {}
        try:
            # What each says is read once, here, before the group looks anything up.
            ready = [
                Ready(index, item.source, parsed, self._insights(item, parsed))
                for index, item, parsed in together
            ]
            with (
                self._ids.lent(),
                transaction(self._sessions) as session,
                self._ids.returned_on_rollback(),
                holding_rows(session, self._ids),
                reading_ahead(session),
            ):
                self._read_ahead(session, ready)
                for item in ready:
                    handled[item.index] = self._handle(
                        session, item.parsed, item.source, now(), item.insights
                    )
                    # The next message starts from the database, as in a transaction of its
                    # own: no ORM row loaded for this one (which plain statements may change
                    # behind it) is handed on.
                    session.flush()
                    session.expunge_all()
        except Exception as error:
            if isinstance(error, DBAPIError) and _is_outage(error):
                raise TemporaryFailure(f"database unavailable: {error.orig}") from error
            log.info(
                "a group of %d messages failed (%s: %s); handling each on its own",
                len(together), type(error).__name__, error,
            )  # fmt: skip
            return {}
        return handled

    def _insights(self, item: Pending, parsed: ParsedMessage) -> Insights:
        """What the parse helper read of `item`, or, when it read none, what `parsed` says."""
        if item.parsed is parsed and item.insights is not None:
            return item.insights
        return gather_insights(parsed, self.classify_context)

    def _read_ahead(self, session: Session, ready: Sequence[Ready]) -> None:
        """What the group's messages will look up first: whether each was seen before, and the
        people a new report names (its sender and any address in its text); and, on PostgreSQL,
        ids for the rows the group will likely write (see `hold_row`)."""
        read_seen_ahead(session, [(r.parsed.message_id, r.parsed.sha256, r.source) for r in ready])
        senders = [r for r in ready if r.parsed.from_address]
        read_people_ahead(
            session,
            [
                address
                for r in senders
                for address in (r.parsed.from_address, *r.insights.text.mentioned)
            ],
        )
        # Mail that starts no thread and was not seen before is likely a new report. Ids drawn
        # for more rows than the group writes wait for the next group; a row with none on hand
        # is written at once.
        new_reports = sum(
            1
            for r in senders
            if not r.parsed.in_reply_to
            and not r.parsed.references
            and unseen_ahead(session, r.parsed.message_id, r.parsed.sha256, r.source)
        )
        self._ids.top_up(
            session,
            {
                _INBOUND: len(ready),
                _CASES: new_reports,
                _PEOPLE: count_new_ahead(session, (r.parsed.from_address for r in ready)),
            },
        )

    def _parse(self, raw: bytes, source: SourceRef, now: datetime) -> ParsedMessage | Result:
        """`raw` parsed in the bounded parser, or the quarantine entry of a message it refused."""
        try:
            return self._parser.parse(raw)
        except MessageRefused as error:
            return self.quarantine(raw, source, now, "refused", error)
        except Exception as error:  # the parser met something it cannot read at all
            return self.quarantine(raw, source, now, "unparseable message", error)

    def _recorded_meanwhile(self, source: SourceRef) -> Result | None:
        if source.uid is None:
            return None
        with transaction(self._sessions) as session:
            found = session.execute(
                _SAME_UID,
                {"mailbox": source.mailbox, "uidvalidity": source.uidvalidity, "uid": source.uid},
            ).scalar()
            row = None if found is None else session.get(InboundMessage, found)
            if row is None:
                return None
            why = f"recorded meanwhile by another reader as inbound #{row.id}"
            return Result(Outcome.DUPLICATE, row.id, row.case_id, row.disposition, why)

    def _handle(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        insights: Insights | None = None,
    ) -> Result:
        earlier = find_seen(session, parsed.message_id, parsed.sha256, source)
        if earlier is not None:
            return self._duplicate(session, parsed, source, now, earlier)
        if insights is None:  # not read by a parse helper: read here, once
            insights = gather_insights(parsed, self.classify_context)
        verdict = insights.classification
        if verdict.automated:
            return self._automated(session, parsed, source, now, verdict)
        if not parsed.from_address:
            row = self._record(
                session, parsed, source, now, Disposition.REJECTED, "no sender address"
            )
            return _result(row)
        route = route_reply(
            session,
            secret=self._desk.desk.token_secret,
            desk_address=self._desk.desk.address,
            sender=parsed.from_address,
            token_addresses=[
                *parsed.to_addresses,
                *parsed.cc_addresses,
                *parsed.header_values("Delivered-To"),
                *parsed.header_values("X-Original-To"),
            ],
            thread_ids=[i for i in (parsed.in_reply_to, *parsed.references) if i],
            subject=parsed.subject,
        )
        case = session.get(Case, route.case_id) if route is not None else None
        if route is not None and case is not None:
            return self._reply(session, parsed, source, now, route, case)
        if self._desk.moderators.is_moderator(parsed.from_address):
            answered = caseless_mail_answered(session, [parsed.in_reply_to, *parsed.references])
            if answered is not None:
                reason = "reply to caseless mail"
                row = self._record(session, parsed, source, now, Disposition.REJECTED, reason)
                answer_caseless_reply(self._desk, session, row, answered, now)
                return _result(row)
        record = self._make_record(parsed, source, now, Disposition.NEW_CASE, verdict.rule)
        proactive = self._from_a_moderator(parsed)
        opened = open_case(
            self._desk, session, record, now, proactive=proactive, reading=insights.text
        )
        return Result(
            Outcome.PROCESSED, opened.inbound_id, opened.case_id, record.disposition, record.reason
        )

    def _from_a_moderator(self, parsed: ParsedMessage) -> bool:
        """A moderator's own mail, trusted as far as their commands are: a From header alone
        is easy to forge, and a forged one must not pass for the team's own finding."""
        moderators = self._desk.moderators
        if not moderators.is_moderator(parsed.from_address):
            return False
        if not moderators.require_authenticated:
            return True
        return judge_parsed_sender(parsed, moderators).authenticated

    def _automated(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        verdict: Classification,
    ) -> Result:
        """Recorded, tied to our mail when it is a bounce or complaint, and never answered."""
        disposition = Disposition.LOOP if verdict.verdict is Verdict.LOOP else Disposition.AUTOMATED
        reason = f"{verdict.verdict}: {verdict.rule}"
        desk = self._desk.desk
        if verdict.verdict in (Verdict.BOUNCE, Verdict.FEEDBACK_REPORT):
            # Tied to our mail: the suppression code sets the row's case, so it is an ORM row.
            row = self._record(session, parsed, source, now, disposition, reason)
            report = read_bounce(parsed, desk.domain)
            if verdict.verdict is Verdict.BOUNCE:
                record_bounce(
                    session, row, report, now, secret=desk.token_secret,
                    desk_address=desk.address, policy=self._suppression,
                )  # fmt: skip
            else:
                record_complaint(
                    session, row, report, now, secret=desk.token_secret, desk_address=desk.address
                )
            inbound_id, case_id = row.id, row.case_id
        else:
            # Auto-replies and loops, the bulk of automated mail, are only recorded: plain
            # inserts will do.
            record = self._make_record(parsed, source, now, disposition, reason)
            inbound_id, case_id = insert_inbound(session, record), None
        record_event(
            session, now, "message.automated", message=inbound_id, verdict=verdict.verdict.value,
            rule=verdict.rule, detail=verdict.detail,
        )  # fmt: skip
        return Result(Outcome.PROCESSED, inbound_id, case_id, disposition, reason[:200])

    def _reply(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        route: Route,
        case: Case,
    ) -> Result:
        """A reply on a case: commands from a moderator, an appeal, or a party's follow-up."""
        if route.party is Party.MODERATOR:
            reason = f"moderator reply by {route.matched_by}"
            row = self._record(session, parsed, source, now, Disposition.COMMAND, reason)
            handle_moderator_mail(self._desk, session, case, route, parsed, row, now)
            return _result(row)
        reason = f"reply by {route.matched_by}"
        row = self._record(session, parsed, source, now, Disposition.FOLLOW_UP, reason)
        if route.party is Party.SUBJECT and record_appeal(self._desk, session, case, row, now):
            # Recorded as an appeal; the moderators' appeal email replaces the follow-up one.
            row.reason = f"appeal, {reason}"
        else:
            add_follow_up(self._desk, session, case, row, route.party, now)
        return _result(row)

    def _record(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        disposition: Disposition,
        reason: str,
    ) -> InboundMessage:
        row = self._make_record(parsed, source, now, disposition, reason).as_row()
        session.add(row)
        session.flush()
        return row

    def _duplicate(
        self,
        session: Session,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        earlier: InboundMessage,
    ) -> Result:
        """Not processed again, but recorded: its mailbox UID, and its bytes if they differ."""
        same_record = source.uid is not None and (
            (earlier.mailbox, earlier.uidvalidity, earlier.uid)
            == (source.mailbox, source.uidvalidity, source.uid)
        )
        if not same_record:
            reason = f"duplicate of inbound #{earlier.id}"
            keep = parsed.sha256 != earlier.sha256
            record = self._make_record(
                parsed, source, now, Disposition.DUPLICATE, reason, keep_raw=keep
            )
            insert_inbound(session, record)
        return Result(
            Outcome.DUPLICATE,
            earlier.id,
            earlier.case_id,
            earlier.disposition,
            f"seen before as inbound #{earlier.id}",
        )

    def _make_record(
        self,
        parsed: ParsedMessage,
        source: SourceRef,
        now: datetime,
        disposition: Disposition,
        reason: str,
        *,
        keep_raw: bool = True,
    ) -> InboundRecord:
        return InboundRecord(
            received_at=now,
            mailbox=source.mailbox,
            uidvalidity=source.uidvalidity,
            uid=source.uid,
            message_id=parsed.message_id,
            sha256=parsed.sha256,
            size=len(parsed.raw),
            raw=parsed.raw[: self._max_bytes] if keep_raw else b"",
            truncated=parsed.truncated,
            from_address=parsed.from_address,
            from_name=parsed.from_name,
            to_addresses=", ".join(parsed.to_addresses)[:10000],
            subject=parsed.subject,
            date=parsed.date,
            in_reply_to=parsed.in_reply_to,
            body_text=parsed.text,
            defects=tuple(parsed.defects),
            disposition=disposition,
            reason=reason[:200],
            attachments=tuple(
                AttachmentFacts(a.filename, a.content_type, a.size, a.sha256)
                for a in parsed.attachments
            ),
        )

    def quarantine(
        self, raw: bytes, source: SourceRef, now: datetime, reason: str, error: BaseException
    ) -> Result:
        """Keep a message that cannot go through the pipeline at all, with why; raises only
        TemporaryFailure (the database is down)."""
        log.warning("quarantined %s: %s: %s", source.label or source.uid, reason, error)
        detail = "".join(traceback.format_exception(error))[-20000:]
        try:
            with transaction(self._sessions) as session:
                why = f"{reason}: {type(error).__name__}: {error}"[:2000]
                entry = (
                    session.get(QuarantineEntry, source.quarantined) if source.quarantined else None
                )
                if entry is None:
                    entry = QuarantineEntry(
                        received_at=now,
                        source=_describe_source(source),
                        sha256=sha256_of(raw),
                        raw=raw,
                        reason=why,
                        error=detail,
                    )
                    session.add(entry)
                    session.flush()
                else:
                    entry.reason, entry.error = why, detail
                record_event(
                    session, now, "message.quarantined", quarantine=entry.id, reason=entry.reason
                )
                return Result(Outcome.QUARANTINED, None, None, None, entry.reason, entry.id)
        except (OperationalError, DBAPIError) as failure:
            raise TemporaryFailure(f"cannot quarantine: {failure}") from failure


def _result(row: InboundMessage) -> Result:
    return Result(Outcome.PROCESSED, row.id, row.case_id, row.disposition, row.reason)


# Built once: these run for every message, and building a statement costs more than running it.
_SAME_UID = (
    select(InboundMessage.id)
    .where(InboundMessage.mailbox == bindparam("mailbox"))
    .where(InboundMessage.uidvalidity == bindparam("uidvalidity"))
    .where(InboundMessage.uid == bindparam("uid"))
    .limit(1)
)


def _describe_source(source: SourceRef) -> str:
    if source.mailbox is not None and source.uidvalidity is not None and source.uid is not None:
        return source_label(source.mailbox, source.uidvalidity, source.uid)
    return source.label or "unknown"


def _is_outage(error: DBAPIError) -> bool:
    """Connection loss and lock timeouts are outages; constraint violations are not."""
    if error.connection_invalidated:
        return True
    text = str(error.orig).lower()
    return any(
        word in text
        for word in (
            "database is locked",
            "could not connect",
            "connection",
            "server closed",
            "terminating",
            "timeout",
            "disk i/o",
        )
    )
