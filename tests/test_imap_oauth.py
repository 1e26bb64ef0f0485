"""OAuth 2.0 logins (XOAUTH2, OAUTHBEARER) to a real Dovecot that checks tokens over HTTP."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.models import AuditEvent, InboundMessage
from intake.imap import LOGIN_FAILING, LOGIN_RECOVERED, ImapIntake
from intake.imap_client import ImapLoginError
from scheduler.app import App
from scheduler.config import Settings
from scheduler.imap_intake import check_imap, imap_options
from tests.imap_servers import PROCESSED, ImapServer, running_server
from tests.oauth_server import Authority
from tests.test_imap_intake import count, mails

PRINT_FILE = "import sys; sys.stdout.write(open(sys.argv[1]).read())"


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    with Authority("desk", tmp_path / "access-token").serving() as running:
        yield running


@pytest.fixture
def oauth_server(authority: Authority) -> Iterator[ImapServer]:
    with running_server("dovecot", oauth2_url=authority.url) as server:
        yield server


@pytest.fixture
def oauth_app(
    imap_settings: Callable[..., Settings],
    authority: Authority,
    build_apps: Callable[[Settings], App],
) -> Callable[..., App]:
    """An app logging in to `server` by XOAUTH2 (or as keywords say) with the authority's token."""

    def make(server: ImapServer, **imap: Any) -> App:
        values: dict[str, Any] = {
            "auth": "xoauth2",
            "password_file": None,
            "token_command": [sys.executable, "-c", PRINT_FILE, str(authority.token_file)],
            **imap,
        }
        return build_apps(imap_settings(server, **values))

    return make


@pytest.mark.dovecot
@pytest.mark.parametrize("method", ["xoauth2", "oauthbearer"])
def test_a_token_login_reads_the_mailbox(
    method: str,
    oauth_server: ImapServer,
    oauth_app: Callable[..., App],
    authority: Authority,
    clock: FixedClock,
) -> None:
    token = authority.issue()
    app = oauth_app(oauth_server, auth=method)
    oauth_server.deliver(*mails(3))

    app.poll(clock.now())

    assert count(app, InboundMessage) == 3
    assert len(oauth_server.uids(PROCESSED)) == 3
    assert oauth_server.uids("INBOX") == []
    assert authority.asked == [token]
    ok, detail = check_imap(app.settings, app.sessions)
    assert ok, detail
    assert f"(none, {method})" in detail


@pytest.mark.dovecot
def test_every_login_fetches_a_fresh_token(
    oauth_server: ImapServer, oauth_app: Callable[..., App], authority: Authority, clock: FixedClock
) -> None:
    first = authority.issue()
    app = oauth_app(oauth_server)
    oauth_server.deliver(*mails(1, "a"))
    app.poll(clock.now())

    # The first token expires and the operator's command hands out its successor.
    authority.revoke_all()
    second = authority.issue()
    oauth_server.deliver(*mails(1, "b"))
    clock.move_to(clock.now() + timedelta(minutes=61))
    app.poll(clock.now())

    assert authority.asked == [first, second]
    assert count(app, InboundMessage) == 2
    assert oauth_server.uids("INBOX") == []


@pytest.mark.dovecot
def test_a_refused_token_is_a_login_problem_until_a_good_one_comes(
    oauth_server: ImapServer, oauth_app: Callable[..., App], authority: Authority, clock: FixedClock
) -> None:
    authority.issue()
    authority.revoke_all()  # the command still prints a token the server no longer accepts
    app = oauth_app(oauth_server, login_alert_after=2)
    oauth_server.deliver(*mails(1))
    intake = ImapIntake(imap_options(app.settings), app.pipeline, app.sessions)

    for _ in range(2):
        with pytest.raises(ImapLoginError) as refused:
            intake.run_pass(clock.now)
    # Dovecot's JSON status after the failed exchange is kept for the operator.
    assert "server status" in str(refused.value)
    assert '"status"' in str(refused.value)
    assert count(app, InboundMessage) == 0
    with app.sessions() as session:
        failing = session.scalars(select(AuditEvent).where(AuditEvent.kind == LOGIN_FAILING)).one()
    assert failing.detail["failures"] == 2
    ok, detail = check_imap(app.settings, app.sessions)
    assert not ok
    assert "login refused" in detail

    authority.issue()
    intake.run_pass(clock.now)
    intake.close()
    assert count(app, InboundMessage) == 1
    assert count(app, AuditEvent, AuditEvent.kind == LOGIN_RECOVERED) == 1


@pytest.mark.dovecot
def test_a_failing_token_command_says_why_and_logs_in_with_nothing(
    oauth_server: ImapServer,
    oauth_app: Callable[..., App],
    authority: Authority,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    fail = "import sys; sys.stderr.write('invalid_grant: refresh token expired\\n'); sys.exit(3)"
    app = oauth_app(oauth_server, token_command=[sys.executable, "-c", fail])
    oauth_server.deliver(*mails(1))

    with pytest.raises(ImapLoginError) as refused:
        app.poll(clock.now())

    message = str(refused.value)
    assert "exited with status 3: invalid_grant: refresh token expired" in message
    assert authority.asked == []  # nothing was sent to the server
    assert count(app, InboundMessage) == 0
    assert oauth_server.uids("INBOX") != []


def test_a_server_without_the_mechanism_is_refused_before_any_token_is_fetched(
    pymap_server: ImapServer,
    oauth_app: Callable[..., App],
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    ran = tmp_path / "token-command-ran"
    touch = f"open({str(ran)!r}, 'w').write('x'); print('abc')"
    app = oauth_app(pymap_server, auth="oauthbearer", token_command=[sys.executable, "-c", touch])

    with pytest.raises(ImapLoginError) as refused:
        app.poll(clock.now())

    offered = "the server does not offer OAUTHBEARER (its SASL mechanisms: LOGIN, PLAIN)"
    assert offered in str(refused.value)
    assert not ran.exists()
    assert count(app, InboundMessage) == 0
