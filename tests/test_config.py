"""The config file: every problem stops start-up with one message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from casework.credentials import LoginMethod
from casework.durations import Duration
from casework.settings import Step
from scheduler.config import ConfigError, IntakeSource, Tls, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "secret").write_text("0123456789abcdef0123456789abcdef\n")
    path = tmp_path / "safetydesk.toml"
    path.write_text(text)
    return path


MINIMAL = """
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "secret"
[database]
url = "sqlite:///desk.sqlite3"
"""


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    example = (ROOT / "config.example.toml").read_text()
    secret = tmp_path / "token-secret"
    secret.write_text("x" * 40)
    text = example.replace('"/etc/safetydesk/token-secret"', f'"{secret}"')
    text = text.replace('password_file = "/etc/safetydesk/imap-password"', 'password_env = "HOME"')
    text = text.replace('password_file = "/etc/safetydesk/smtp-password"', 'password_env = "HOME"')
    settings = load_settings(write(tmp_path, text))
    assert settings.desk.address == "mentor4u@ecareermentor.in"
    lines = example.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "[")) and "=" in stripped:
            assert lines[index - 1].strip().startswith("#"), f"key without a comment: {stripped}"


def test_minimal_config_gets_the_policy_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.policy.ladder == (Step.WARNING, Step.STRIKE, Step.BAN)
    assert settings.policy.suspension == Duration(months=1)
    assert settings.policy.strike_counts_for == Duration(months=6)
    assert settings.policy.history_strikes == 3
    assert settings.policy.history_window == Duration(months=24)
    assert settings.policy.ban_needs_second_moderator is True
    assert settings.intake.source is IntakeSource.MAILDIR
    assert settings.database.url == f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    assert settings.desk.token_secret == b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[desk]\nadress = 'x'", "[desk] adress: unknown key"),
        ("[intake.imap]\nport = 'nine'", "[intake.imap] port: expected an integer, got a string"),
        ("[intake.imap]\nport = 70000", "[intake.imap] port: expected a TCP port"),
        ("[intake.imap]\nidle = 'yes'", "[intake.imap] idle: expected true or false"),
        ("[intake]\nsource = 'pop3'", '[intake] source: \'pop3\' is not one of "imap", "maildir"'),
        ("[policy]\nsuspension = '1 month'", "[policy] suspension: '1 month' is not an ISO 8601"),
        ("[policy]\nladder = ['warning', 'strike']", "[policy] ladder: the ladder must end"),
        (
            "[moderators]\naddresses = ['not-an-address']",
            "[moderators] addresses[0]: 'not-an-address'",
        ),
        ("[colour]\nx = 1", "[colour]: unknown section"),
        (
            "[outbound.smtp]\npassword = 'hunter2'",
            "[outbound.smtp] password: secrets are not written",
        ),
        (
            "[outbound.smtp]\npassword_file = 'missing'",
            "[outbound.smtp] password_file: cannot read",
        ),
        (
            "[outbound.smtp]\npassword_env = 'SD_NOPE_UNSET'",
            "environment variable SD_NOPE_UNSET is not set",
        ),
        (
            "[outbound.smtp]\nhost = 'smtp.example.com'\ntls = 'none'",
            '[outbound.smtp] tls: "none" is only allowed',
        ),
        ("[intake]\nsource = 'imap'", "[intake.imap] username: missing required key"),
        ("[logging]\nlevel = 'loud'", "[logging] level: 'loud' is not a log level"),
        (
            "[intake.imap]\nauth = 'kerberos'",
            '[intake.imap] auth: \'kerberos\' is not one of "password", "xoauth2", "oauthbearer"',
        ),
        (
            "[intake.imap]\nauth = 'xoauth2'",
            '[intake.imap] token_command: missing required key (auth is "xoauth2")',
        ),
        (
            "[intake.imap]\nauth = 'oauthbearer'\ntoken_command = ['oama']\npassword_env = 'HOME'",
            '[intake.imap] password_file/password_env: not used when auth is "oauthbearer"',
        ),
        (
            "[intake.imap]\ntoken_command = ['oama', 'access']",
            '[intake.imap] token_command: only used when auth is "xoauth2" or "oauthbearer"',
        ),
        (
            "[intake.imap]\nauth = 'xoauth2'\ntoken_command = 'oama access'",
            "[intake.imap] token_command: expected a list of strings, got a string",
        ),
        (
            "[intake.imap]\nauth = 'xoauth2'\ntoken_command = []",
            "[intake.imap] token_command: expected a program and its arguments",
        ),
        (
            "[outbound.smtp]\nauth = 'xoauth2'\ntoken_command = ['oama']",
            '[outbound.smtp] username: missing required key (auth is "xoauth2")',
        ),
        (
            "[outbound.smtp]\nauth = 'oauthbearer'",
            '[outbound.smtp] token_command: missing required key (auth is "oauthbearer")',
        ),
        (
            "[intake.imap]\nauth = 'xoauth2'\ntoken_command = ['oama', 7]",
            "[intake.imap] token_command[1]: expected a string",
        ),
        ("[intake.imap]\nbatch_size = 0", "[intake.imap] batch_size: must be at least 1, got 0"),
        (
            "[intake.imap]\nmessages_per_commit = 0",
            "[intake.imap] messages_per_commit: must be at least 1, got 0",
        ),
        (
            '[intake.imap]\nmessages_per_commit = "25"',
            "[intake.imap] messages_per_commit: expected an integer",
        ),
        ("[outbound]\nbatch_size = 0", "[outbound] batch_size: must be at least 1, got 0"),
        ("[outbound]\nmax_attempts = 0", "[outbound] max_attempts: must be at least 1"),
        ("[intake]\nmax_message_bytes = 0", "[intake] max_message_bytes: must be at least 1"),
        ("[intake.imap]\nlogin_alert_after = 0", "[intake.imap] login_alert_after: must be at"),
        ("[hygiene]\nmax_mime_depth = 0", "[hygiene] max_mime_depth: must be at least 1"),
        (
            "[intake.imap]\npoll_interval = 'PT0S'",
            "[intake.imap] poll_interval: must be at least one second, got 'PT0S'",
        ),
        ("[intake.imap]\ntimeout = 'PT0S'", "[intake.imap] timeout: must be at least one second"),
        ("[outbound.smtp]\ntimeout = 'P0D'", "[outbound.smtp] timeout: must be at least one"),
        ("[schedule]\noutbox_interval = 'PT0S'", "[schedule] outbox_interval: must be at least"),
        (
            "[intake.imap]\nreconnect_min = 'PT10M'\nreconnect_max = 'PT1M'",
            "[intake.imap] reconnect_max: must not be shorter than reconnect_min (PT1M < PT10M)",
        ),
        (
            "[outbound]\nretry_after = 'PT7H'",
            "[outbound] retry_max: must not be shorter than retry_after (PT6H < PT7H)",
        ),
    ],
)
def test_a_bad_key_is_named_with_the_problem(tmp_path: Path, extra: str, message: str) -> None:
    text = MINIMAL
    section = extra.split("\n", 1)[0]
    # Merge into an existing table instead of repeating it.
    text = text.replace(section, extra) if section in text else f"{text}\n{extra}\n"
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    assert message in str(raised.value)


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[database\] url: missing required key"):
        load_settings(write(tmp_path, MINIMAL.replace('url = "sqlite:///desk.sqlite3"', "")))
    with pytest.raises(ConfigError, match=r"\[desk\] token_secret_file: missing required key"):
        load_settings(write(tmp_path, MINIMAL.replace('token_secret_file = "secret"', "")))


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(write(tmp_path, "[desk\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nowhere.toml")


def test_secrets_from_environment_and_loopback_plaintext(tmp_path: Path) -> None:
    text = MINIMAL + '\n[outbound.smtp]\nhost = "127.0.0.1"\ntls = "none"\npassword_env = "SD_PW"\n'
    settings = load_settings(write(tmp_path, text), environ={"SD_PW": "s3cret"})
    assert settings.outbound.smtp.password == "s3cret"
    assert settings.outbound.smtp.tls is Tls.NONE


def test_a_token_login_needs_no_password(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[intake]\nsource = "imap"\n[intake.imap]\nusername = "mentor4u@ecareermentor.in"\n'
        'auth = "XOAUTH2"\ntoken_command = ["oama", "access", "mentor4u@ecareermentor.in"]\n'
    )
    imap = load_settings(write(tmp_path, text)).intake.imap
    assert imap.auth is LoginMethod.XOAUTH2
    assert imap.token_command == ("oama", "access", "mentor4u@ecareermentor.in")
    assert imap.password == ""


def test_a_relative_token_command_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[intake.imap]\nauth = "oauthbearer"\ntoken_command = ["bin/imap-token", "--fresh"]\n'
        '[outbound.smtp]\nusername = "desk"\nauth = "xoauth2"\ntoken_command = ["oama", "access"]\n'
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.intake.imap.token_command == (str(tmp_path / "bin/imap-token"), "--fresh")
    assert settings.outbound.smtp.token_command == ("oama", "access")


def test_durations_are_calendar_aware() -> None:
    from datetime import UTC, datetime

    assert Duration.parse("P1M").after(datetime(2027, 1, 31, tzinfo=UTC)) == datetime(
        2027, 2, 28, tzinfo=UTC
    )
    assert Duration.parse("P6M").after(datetime(2027, 8, 31, tzinfo=UTC)) == datetime(
        2028, 2, 29, tzinfo=UTC
    )
    assert Duration.parse("PT30S").seconds == 30
    assert str(Duration.parse("P1Y2M3DT4H5M6S")) == "P1Y2M3DT4H5M6S"
    for bad in ("P", "PT", "1M", "P1.5M", ""):
        with pytest.raises(ValueError):
            Duration.parse(bad)
