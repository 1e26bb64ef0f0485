"""Reading a moderator's reply off the wire: its typed part and its authentication."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from casework.desk import Desk
from casework.models import Case, Disposition, InboundMessage
from casework.moderation import ModeratorReply, handle_commands, refusal_reason, refuse_commands
from casework.routing import Route
from casework.settings import ModeratorSettings
from intake.authresults import Verdict, judge_sender
from intake.parse import ParsedMessage, html_to_text
from intake.reply_text import ReplyParts, split_html_reply, split_reply


def read_reply(parsed: ParsedMessage) -> ReplyParts:
    """The typed part of the reply; an HTML-only reply is cut where its client put the quote."""
    html_only = bool(parsed.html) and parsed.text == html_to_text(parsed.html)
    if html_only:
        return split_html_reply(parsed.html)
    return split_reply(parsed.text)


def judge_parsed_sender(parsed: ParsedMessage, moderators: ModeratorSettings) -> Verdict:
    """Whether our server's Authentication-Results vouch for the From address of `parsed`."""
    headers = [(str(name), str(value)) for name, value in parsed.headers.items()]
    return judge_sender(headers, moderators.trusted_authserv_ids, parsed.from_address)


def handle_moderator_mail(
    desk: Desk,
    session: Session,
    case: Case,
    route: Route,
    parsed: ParsedMessage,
    row: InboundMessage,
    now: datetime,
) -> None:
    """Commands from a moderator who passed every check; otherwise a refusal, audited."""
    parts = read_reply(parsed)
    verdict = judge_parsed_sender(parsed, desk.moderators)
    reply = ModeratorReply(
        typed=parts.reply,
        quoted_lines=parts.quoted_lines,
        has_signature=bool(parts.signature),
        authenticated=verdict.authenticated,
        auth_reason=verdict.reason,
    )
    reason = refusal_reason(desk, route, parsed.from_address, reply)
    if reason is not None:
        row.disposition = Disposition.REJECTED
        row.reason = f"commands refused: {reason}"[:200]
        refuse_commands(desk, session, case, row, reason, now)
        return
    handle_commands(desk, session, case, row, reply, now)
