"""The token command: a real program run for each login, and every way it can go wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from casework.credentials import LoginMethod, TokenCommand, TokenError, fetch_token
from intake.imap_client import BearerExchange


def python(code: str, timeout: float = 10) -> TokenCommand:
    return TokenCommand((sys.executable, "-c", code), timeout)


def test_the_printed_token_is_returned_without_its_line_end() -> None:
    assert python("print('ya29.a0Af-_~+/x==')").fetch() == "ya29.a0Af-_~+/x=="


def test_each_fetch_runs_the_command_again(tmp_path: Path) -> None:
    source = tmp_path / "token"
    command = python(f"print(open({str(source)!r}).read())")
    source.write_text("first-token")
    assert command.fetch() == "first-token"
    source.write_text("second-token")
    assert command.fetch() == "second-token"


def test_a_failing_command_reports_its_status_and_last_error_line() -> None:
    code = (
        "import sys; sys.stderr.write('contacting\\ninvalid_grant: token revoked\\n'); sys.exit(2)"
    )
    with pytest.raises(TokenError) as failed:
        python(code).fetch()
    assert str(failed.value).endswith("exited with status 2: invalid_grant: token revoked")


def test_a_command_that_hangs_is_stopped() -> None:
    with pytest.raises(TokenError, match=r"did not finish within 0\.3 s"):
        python("import time; time.sleep(60)", timeout=0.3).fetch()


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-helper")
    with pytest.raises(TokenError, match="no-such-helper cannot run: No such file or directory"):
        TokenCommand((missing, "access"), 5).fetch()


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("pass", "printed nothing"),
        ("print('   ')", "printed nothing"),
        ("print('Password: hunter2 hunter2')", "is not a bearer token"),
        ("print('line-one'); print('line-two')", "is not a bearer token"),
        ("print('tok\\u00e9n')", "is not a bearer token"),
        ("print('a' * 20000)", "more than a token"),
    ],
)
def test_output_that_is_not_a_token_is_refused_without_repeating_it(
    code: str, problem: str
) -> None:
    with pytest.raises(TokenError) as refused:
        python(code).fetch()
    assert problem in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert "line-one" not in str(refused.value)


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(TokenError, match="empty"):
        TokenCommand((), 5).fetch()


def test_xoauth2_sends_the_token_then_closes_a_failed_exchange_with_an_empty_line() -> None:
    exchange = BearerExchange(LoginMethod.XOAUTH2, "desk@example.in", "tok")
    assert exchange(b"") == b"user=desk@example.in\x01auth=Bearer tok\x01\x01"
    assert exchange.server_said() == ""
    assert exchange(b'{"status":"400"}') == b""
    assert exchange.server_said() == ' (server status: {"status":"400"})'


def test_oauthbearer_escapes_the_identity_and_closes_with_ctrl_a() -> None:
    exchange = BearerExchange(LoginMethod.OAUTHBEARER, "a=b,c@example.in", "tok")
    # RFC 7628 §3.1 and RFC 5801 §4: "=" and "," in the authzid are escaped.
    assert exchange(b"") == b"n,a=a=3Db=2Cc@example.in,\x01auth=Bearer tok\x01\x01"
    assert exchange(b'{"status":"invalid_token"}') == b"\x01"


def test_a_token_is_fetched_only_for_a_mechanism_the_server_offers(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = python(f"open({str(ran)!r}, 'w'); print('tok')")
    with pytest.raises(TokenError) as refused:
        fetch_token(LoginMethod.XOAUTH2, command, ["plain", "LOGIN"])
    assert str(refused.value) == (
        "the server does not offer XOAUTH2 (its SASL mechanisms: LOGIN, PLAIN)"
    )
    assert not ran.exists()
    with pytest.raises(TokenError, match=r"^OAUTHBEARER needs a token command$"):
        fetch_token(LoginMethod.OAUTHBEARER, None, ["OAUTHBEARER"])
    assert fetch_token(LoginMethod.XOAUTH2, command, ["xoauth2"]) == "tok"
    assert ran.exists()
