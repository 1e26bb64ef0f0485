"""The TOML configuration file, read once at start into typed, validated settings."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from casework.credentials import LoginMethod, Tls
from casework.durations import Duration, DurationError
from casework.settings import DeskSettings, ModeratorSettings, PolicySettings, Step
from casework.suppressions import SuppressionPolicy
from intake.bounds import Limits
from outbound.caps import CapPolicy

# The components' own defaults are the configuration's: written once, where they are used.
_LIMITS, _CAPS, _SUPPRESSION = Limits(), CapPolicy(), SuppressionPolicy()


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what is wrong."""


class IntakeSource(StrEnum):
    IMAP = "imap"
    MAILDIR = "maildir"


class Transport(StrEnum):
    SMTP = "smtp"
    MAILDIR = "maildir"


class AfterProcessing(StrEnum):
    """What happens to a message in the mailbox once its transaction has committed."""

    MOVE = "move"
    FLAG = "flag"


@dataclass(frozen=True)
class ImapSettings:
    host: str = "localhost"
    port: int = 993
    tls: Tls = Tls.SSL
    username: str = ""
    password: str = ""
    auth: LoginMethod = LoginMethod.PASSWORD
    token_command: tuple[str, ...] = ()
    folder: str = "INBOX"
    processed_folder: str = "SafetyDesk/Processed"
    quarantine_folder: str = ""
    after_processing: AfterProcessing = AfterProcessing.MOVE
    idle: bool = True
    poll_interval: Duration = Duration(seconds=60)
    batch_size: int = 200
    timeout: Duration = Duration(seconds=30)
    reconnect_min: Duration = Duration(seconds=1)
    reconnect_max: Duration = Duration(seconds=300)
    login_alert_after: int = 3
    parse_workers: int = 1
    messages_per_commit: int = 25
    ca_file: Path | None = None


@dataclass(frozen=True)
class IntakeSettings:
    source: IntakeSource = IntakeSource.MAILDIR
    maildir: Path = Path("var/maildir/in")
    max_message_bytes: int = _LIMITS.max_message_bytes
    imap: ImapSettings = ImapSettings()


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    tls: Tls = Tls.STARTTLS
    username: str = ""
    password: str = ""
    auth: LoginMethod = LoginMethod.PASSWORD
    token_command: tuple[str, ...] = ()
    timeout: Duration = Duration(seconds=30)
    ca_file: Path | None = None


@dataclass(frozen=True)
class OutboundSettings:
    transport: Transport = Transport.MAILDIR
    maildir: Path = Path("var/maildir/out")
    max_attempts: int = 8
    retry_after: Duration = Duration(seconds=60)
    retry_max: Duration = Duration(seconds=6 * 3600)
    batch_size: int = 100
    smtp: SmtpSettings = SmtpSettings()


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/safetydesk.sqlite3"


@dataclass(frozen=True)
class ScheduleSettings:
    poll_interval: Duration = Duration(seconds=30)
    outbox_interval: Duration = Duration(seconds=15)
    sweep_interval: Duration = Duration(seconds=300)


@dataclass(frozen=True)
class HygieneSettings:
    """Mail hygiene: bounce suppression, rate caps and per-message limits (docs/hygiene.md)."""

    suppress_after_bounces: int = _SUPPRESSION.after_bounces
    suppress_for: Duration = _SUPPRESSION.period
    per_address_cap: int = _CAPS.per_address_cap
    per_address_window: Duration = Duration(seconds=int(_CAPS.per_address_window.total_seconds()))
    global_cap_per_hour: int = _CAPS.global_cap_per_hour
    moderator_cap: int = _CAPS.moderator_cap
    max_attachment_bytes: int = _LIMITS.max_attachment_bytes
    max_header_bytes: int = _LIMITS.max_header_bytes
    max_mime_depth: int = _LIMITS.max_mime_depth
    parse_timeout: Duration = Duration(seconds=int(_LIMITS.parse_timeout))
    parse_memory_bytes: int = _LIMITS.parse_memory_bytes


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    """Everything the worker is told by its configuration file."""

    desk: DeskSettings = DeskSettings()
    database: DatabaseSettings = DatabaseSettings()
    intake: IntakeSettings = IntakeSettings()
    outbound: OutboundSettings = OutboundSettings()
    moderators: ModeratorSettings = ModeratorSettings()
    policy: PolicySettings = PolicySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    hygiene: HygieneSettings = HygieneSettings()
    source_path: Path | None = field(default=None, compare=False)


# --- value readers: each takes the dotted key (for messages) and the raw TOML value ---------------

Reader = Callable[[str, Any], Any]


def _expect(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise ConfigError(f"{key}: expected {what}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {what}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _read_str(key: str, value: Any) -> str:
    return str(_expect(key, value, str, "a string"))


def _read_nonempty(key: str, value: Any) -> str:
    text = _read_str(key, value).strip()
    if not text:
        raise ConfigError(f"{key}: must not be empty")
    return text


def _read_int(key: str, value: Any) -> int:
    number = int(_expect(key, value, int, "an integer"))
    if number < 0:
        raise ConfigError(f"{key}: must not be negative, got {number}")
    return number


def _read_count(key: str, value: Any) -> int:
    """A size or a number of things that must be at least one (0 would stop the work)."""
    number = _read_int(key, value)
    if number < 1:
        raise ConfigError(f"{key}: must be at least 1, got {number}")
    return number


def _read_port(key: str, value: Any) -> int:
    number = _read_int(key, value)
    if not 0 < number < 65536:
        raise ConfigError(f"{key}: expected a TCP port (1-65535), got {number}")
    return number


def _read_hour(key: str, value: Any) -> int:
    number = _read_int(key, value)
    if number > 23:
        raise ConfigError(f"{key}: expected an hour of the day (0-23, UTC), got {number}")
    return number


def _read_bool(key: str, value: Any) -> bool:
    return bool(_expect(key, value, bool, "true or false"))


def _read_path(key: str, value: Any) -> Path:
    return Path(_read_nonempty(key, value)).expanduser()


def _read_duration(key: str, value: Any) -> Duration:
    try:
        return Duration.parse(_read_str(key, value))
    except DurationError as error:
        raise ConfigError(f"{key}: {error}") from None


def _read_period(key: str, value: Any) -> Duration:
    """An interval, a delay or a timeout: zero would spin, never wait, or give up at once."""
    duration = _read_duration(key, value)
    if duration.approximate().total_seconds() < 1:
        raise ConfigError(f"{key}: must be at least one second, got {value!r}")
    return duration


def _read_addresses(key: str, value: Any) -> tuple[str, ...]:
    items = _expect(key, value, list, "a list of email addresses")
    addresses = []
    for index, item in enumerate(items):
        address = _read_str(f"{key}[{index}]", item).strip().lower()
        if address.count("@") != 1 or any(c.isspace() for c in address):
            raise ConfigError(f"{key}[{index}]: {item!r} is not an email address")
        addresses.append(address)
    return tuple(addresses)


def _read_strings(key: str, value: Any) -> tuple[str, ...]:
    items = _expect(key, value, list, "a list of strings")
    return tuple(_read_str(f"{key}[{index}]", item) for index, item in enumerate(items))


def _read_command(key: str, value: Any) -> tuple[str, ...]:
    """A program and its arguments, run without a shell: a non-empty list of strings."""
    argv = _read_strings(key, value)
    if not argv or not argv[0].strip():
        raise ConfigError(f'{key}: expected a program and its arguments, e.g. ["oama", "access"]')
    return argv


def _read_enum(kind: type[StrEnum]) -> Reader:
    def read(key: str, value: Any) -> StrEnum:
        text = _read_str(key, value)
        try:
            return kind(text.lower())
        except ValueError:
            allowed = ", ".join(f'"{member.value}"' for member in kind)
            raise ConfigError(f"{key}: {text!r} is not one of {allowed}") from None

    return read


def _read_ladder(key: str, value: Any) -> tuple[Step, ...]:
    steps = tuple(
        _read_enum(Step)(f"{key}[{i}]", v)
        for i, v in enumerate(_expect(key, value, list, "a list of steps"))
    )
    if not steps or steps[-1] is not Step.BAN:
        raise ConfigError(f'{key}: the ladder must end with "ban"')
    if len(set(steps)) != len(steps):
        raise ConfigError(f"{key}: a step appears twice")
    if list(steps) != sorted(steps, key=list(Step).index):
        raise ConfigError(f"{key}: the steps must keep the policy's order: warning, strike, ban")
    return steps


def _read_level(key: str, value: Any) -> str:
    level = _read_str(key, value).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"{key}: {value!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    return level


def _read_db_url(key: str, value: Any) -> str:
    url = _read_nonempty(key, value)
    if not url.startswith(("sqlite:///", "postgresql+psycopg://", "postgresql://")):
        raise ConfigError(
            f"{key}: expected sqlite:///PATH or postgresql+psycopg://…, got {url.split(':')[0]!r}"
        )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


# --- the schema: section -> key -> reader. Secret keys are listed separately. ---------------------

_SCHEMA: dict[str, dict[str, Reader]] = {
    "desk": {"address": _read_nonempty, "name": _read_nonempty, "resources_url": _read_nonempty},
    "database": {"url": _read_db_url},
    "intake": {
        "source": _read_enum(IntakeSource),
        "maildir": _read_path,
        "max_message_bytes": _read_count,
    },
    "intake.imap": {
        "host": _read_nonempty,
        "port": _read_port,
        "tls": _read_enum(Tls),
        "username": _read_str,
        "auth": _read_enum(LoginMethod),
        "token_command": _read_command,
        "folder": _read_nonempty,
        "processed_folder": _read_nonempty,
        "quarantine_folder": _read_str,
        "after_processing": _read_enum(AfterProcessing),
        "idle": _read_bool,
        "poll_interval": _read_period,
        "batch_size": _read_count,
        "timeout": _read_period,
        "reconnect_min": _read_period,
        "reconnect_max": _read_period,
        "login_alert_after": _read_count,
        "parse_workers": _read_int,
        "messages_per_commit": _read_count,
        "ca_file": _read_path,
    },
    "outbound": {
        "transport": _read_enum(Transport),
        "maildir": _read_path,
        "max_attempts": _read_count,
        "retry_after": _read_period,
        "retry_max": _read_period,
        "batch_size": _read_count,
    },
    "outbound.smtp": {
        "host": _read_nonempty,
        "port": _read_port,
        "tls": _read_enum(Tls),
        "username": _read_str,
        "auth": _read_enum(LoginMethod),
        "token_command": _read_command,
        "timeout": _read_period,
        "ca_file": _read_path,
    },
    "moderators": {
        "addresses": _read_addresses,
        "require_authenticated": _read_bool,
        "trusted_authserv_ids": _read_strings,
        "unassigned_after": _read_duration,
        "unanswered_after": _read_duration,
        "digest_hour": _read_hour,
    },
    "policy": {
        "ladder": _read_ladder,
        "suspension": _read_duration,
        "strike_counts_for": _read_duration,
        "warning_counts_for": _read_duration,
        "history_strikes": _read_int,
        "history_window": _read_duration,
        "ban_needs_second_moderator": _read_bool,
        "appeal_window": _read_duration,
        "suspension_disables": _read_strings,
    },
    "schedule": {
        "poll_interval": _read_period,
        "outbox_interval": _read_period,
        "sweep_interval": _read_period,
    },
    "logging": {"level": _read_level},
    "hygiene": {
        "suppress_after_bounces": _read_int,
        "suppress_for": _read_duration,
        "per_address_cap": _read_int,
        "per_address_window": _read_duration,
        "global_cap_per_hour": _read_int,
        "moderator_cap": _read_int,
        "max_attachment_bytes": _read_int,
        "max_header_bytes": _read_count,
        "max_mime_depth": _read_count,
        "parse_timeout": _read_duration,
        "parse_memory_bytes": _read_count,
    },
}

# A secret NAME is given as NAME_file (a path) or NAME_env (a variable name), never inline.
_SECRETS: dict[str, tuple[str, ...]] = {
    "desk": ("token_secret",),
    "intake.imap": ("password",),
    "outbound.smtp": ("password",),
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "desk": ("address",),
    "database": ("url",),
}


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the file at `path`; any problem raises ConfigError naming the key."""
    environ = os.environ if environ is None else environ
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    return parse_settings(document, base=path.parent, environ=environ, source=path)


def parse_settings(
    document: Mapping[str, Any],
    *,
    base: Path,
    environ: Mapping[str, str],
    source: Path | None = None,
) -> Settings:
    """Validate an already-parsed TOML document; relative paths are taken from `base`."""
    values = _flatten(document)
    for section, keys in _REQUIRED.items():
        for key in keys:
            if key not in values.get(section, {}):
                raise ConfigError(f"[{section}] {key}: missing required key")
    read: dict[str, dict[str, Any]] = {}
    for section, entries in values.items():
        schema = _SCHEMA[section]
        secrets = _SECRETS.get(section, ())
        out: dict[str, Any] = {}
        for key, value in entries.items():
            dotted = f"[{section}] {key}"
            secret = next((s for s in secrets if key in (f"{s}_file", f"{s}_env")), None)
            if secret is not None:
                out[secret] = _read_secret(dotted, key, value, base, environ)
            elif key in secrets:
                raise ConfigError(
                    f"{dotted}: secrets are not written inline; use {key}_file or {key}_env"
                )
            elif key in schema:
                item = schema[key](dotted, value)
                out[key] = (
                    base / item if isinstance(item, Path) and not item.is_absolute() else item
                )
            else:
                known = ", ".join(
                    sorted(
                        [*schema, *(f"{s}_file" for s in secrets), *(f"{s}_env" for s in secrets)]
                    )
                )
                raise ConfigError(f"{dotted}: unknown key (known keys: {known})")
        read[section] = out
    return _assemble(read, base, source)


def _flatten(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split the document into sections, nested tables like intake.imap becoming their own."""
    sections: dict[str, dict[str, Any]] = {}
    for name, body in document.items():
        if name not in _SCHEMA:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            raise ConfigError(f"[{name}]: unknown section (known sections: {known})")
        if not isinstance(body, dict):
            raise ConfigError(f"{name}: expected a table [{name}], got {_describe(body)}")
        own: dict[str, Any] = {}
        for key, value in body.items():
            child = f"{name}.{key}"
            if isinstance(value, dict) and child in _SCHEMA:
                sections[child] = dict(value)
            elif isinstance(value, dict):
                raise ConfigError(f"[{child}]: unknown section")
            else:
                own[key] = value
        sections[name] = own
    return sections


def _read_secret(dotted: str, key: str, value: Any, base: Path, environ: Mapping[str, str]) -> str:
    name = _read_nonempty(dotted, value)
    if key.endswith("_env"):
        if name not in environ:
            raise ConfigError(f"{dotted}: environment variable {name} is not set")
        return environ[name]
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{dotted}: cannot read {path}: {error.strerror}") from None


def _assemble(read: dict[str, dict[str, Any]], base: Path, source: Path | None) -> Settings:
    desk = dict(read.get("desk", {}))
    if "token_secret" in desk:
        desk["token_secret"] = desk["token_secret"].encode("utf-8")
        if len(desk["token_secret"]) < 16:
            raise ConfigError("[desk] token_secret: must be at least 16 characters long")
    address = desk.get("address", "")
    if address.count("@") != 1:
        raise ConfigError(f"[desk] address: {address!r} is not an email address")
    imap = ImapSettings(**_anchor_command(read.get("intake.imap", {}), base))
    smtp = SmtpSettings(**_anchor_command(read.get("outbound.smtp", {}), base))
    intake = IntakeSettings(
        **{"maildir": base / "var/maildir/in", **read.get("intake", {}), "imap": imap}
    )
    outbound = OutboundSettings(
        **{"maildir": base / "var/maildir/out", **read.get("outbound", {}), "smtp": smtp}
    )
    for section, tls, host in (
        ("intake.imap", imap.tls, imap.host),
        ("outbound.smtp", smtp.tls, smtp.host),
    ):
        if tls is Tls.NONE and not is_loopback(host):
            raise ConfigError(
                f'[{section}] tls: "none" is only allowed for a loopback host, not {host!r}'
            )
    if intake.source is IntakeSource.IMAP and not imap.username:
        raise ConfigError('[intake.imap] username: missing required key (source is "imap")')
    _check_login("intake.imap", imap.auth, imap.token_command, imap.password)
    _check_login("outbound.smtp", smtp.auth, smtp.token_command, smtp.password)
    if smtp.auth.uses_token and not smtp.username:
        raise ConfigError(
            f'[outbound.smtp] username: missing required key (auth is "{smtp.auth.value}")'
        )
    for section, low_key, low, high_key, high in (
        ("intake.imap", "reconnect_min", imap.reconnect_min, "reconnect_max", imap.reconnect_max),
        ("outbound", "retry_after", outbound.retry_after, "retry_max", outbound.retry_max),
    ):
        if high.approximate() < low.approximate():
            raise ConfigError(
                f"[{section}] {high_key}: must not be shorter than {low_key} ({high} < {low})"
            )
    for key, other in (
        ("processed_folder", imap.processed_folder),
        ("quarantine_folder", imap.quarantine_folder),
    ):
        if other == imap.folder:
            raise ConfigError(
                f"[intake.imap] {key}: must not be the folder that is read ({other!r})"
            )
    database = dict(read.get("database", {}))
    if database.get("url", "").startswith("sqlite:///"):
        database["url"] = _anchor_sqlite(database["url"], base)
    settings = Settings(
        desk=DeskSettings(**desk),
        database=DatabaseSettings(**database),
        intake=intake,
        outbound=outbound,
        moderators=ModeratorSettings(**read.get("moderators", {})),
        policy=PolicySettings(**read.get("policy", {})),
        schedule=ScheduleSettings(**read.get("schedule", {})),
        logging=LoggingSettings(**read.get("logging", {})),
        hygiene=HygieneSettings(**read.get("hygiene", {})),
        source_path=source,
    )
    if not settings.desk.token_secret:
        raise ConfigError(
            "[desk] token_secret_file: missing required key (the secret that signs reply addresses)"
        )
    return settings


def _check_login(
    section: str, method: LoginMethod, token_command: tuple[str, ...], password: str
) -> None:
    """A token login needs its command; a password login must not be given one (or vice versa)."""
    if method.uses_token and not token_command:
        raise ConfigError(
            f'[{section}] token_command: missing required key (auth is "{method.value}")'
        )
    if method.uses_token and password:
        raise ConfigError(
            f'[{section}] password_file/password_env: not used when auth is "{method.value}"; '
            "remove it"
        )
    if token_command and not method.uses_token:
        raise ConfigError(
            f'[{section}] token_command: only used when auth is "xoauth2" or "oauthbearer" '
            f'(auth is "{method.value}")'
        )


def _anchor_command(section: dict[str, Any], base: Path) -> dict[str, Any]:
    """A token command given as a relative path ("bin/token") is taken from the config's folder,
    like every other path; a bare name ("oama") is looked up in PATH."""
    argv = section.get("token_command")
    if not argv or "/" not in argv[0] or Path(argv[0]).is_absolute():
        return section
    return {**section, "token_command": (str(base / argv[0]), *argv[1:])}


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path is taken from the config file's folder, like every other path."""
    path = url.removeprefix("sqlite:///")
    if path in ("", ":memory:") or Path(path).is_absolute():
        return url
    return f"sqlite:///{base / path}"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
