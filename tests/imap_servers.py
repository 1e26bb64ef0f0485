"""Real IMAP servers for the tests: pymap and Dovecot on a free loopback port, own data dirs."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient
import pytest

from scheduler.app import App, build_app
from scheduler.config import Settings
from tests.conftest import SettingsFactory, service_missing

PROCESSED = "Processed"
USERNAME = "desk"
PASSWORD = "s3cret-desk-password"


def wait_until(
    condition: Callable[[], bool], seconds: float, state: Callable[[], object] | None = None
) -> None:
    """Wait for something another thread or process does; fail after `seconds`, saying what
    `state` then gives."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            seen = "" if state is None else f"; state then: {state()!r}"
            raise AssertionError(f"condition not reached in {seconds:g}s{seen}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None and not _listening(port):
            raise RuntimeError(f"IMAP server exited ({process.returncode}): {_tail(log)}")
        if _listening(port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"IMAP server did not listen on {port}: {_tail(log)}")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


@dataclass
class ImapServer:
    """A running server the tests talk to; `client()` is the test's own view of the mailbox."""

    kind: str
    root: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    username: str = USERNAME
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = None
    tls: bool = False
    # Dovecot only: also accept XOAUTH2 and OAUTHBEARER, asking this introspection URL.
    oauth2_url: str = ""

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (for 127.0.0.1) when started with TLS."""
        return self.root / "cert.pem"

    def make_certificate(self) -> None:
        if self.certificate.exists():
            return
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(self.root / "key.pem"), "-out", str(self.certificate),
                "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (self.root / "key.pem").chmod(0o644)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def client(self) -> Iterator[imapclient.IMAPClient]:
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.username, self.password)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def deliver(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Put messages into `folder` the way an MTA's local delivery would."""
        with self.client() as client:
            for raw in messages:
                client.append(folder, raw)

    def uids(self, folder: str) -> list[int]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return sorted(int(u) for u in client.search(["NOT", "DELETED"]))

    def flags(self, folder: str) -> list[set[bytes]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags(client.search(["NOT", "DELETED"]))
            return [set(found[uid]) for uid in sorted(found)]

    def message_ids(self, folder: str) -> list[str]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["NOT", "DELETED"])
            if not uids:
                return []
            data = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            found = []
            for item in data.values():
                header = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
                found.append(bytes(header).decode().split(":", 1)[1].strip())
            return sorted(found)


@dataclass
class PymapServer(ImapServer):
    """pymap's on-disk maildir backend: state survives a restart."""

    def start(self) -> None:
        from pysasl.hashing import BuiltinHash

        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "pymap-etc-passwd").write_text(f"{self.username}:x::::{self.username}:\n")
        hashed = BuiltinHash(rounds=1000).hash(self.password)
        (data / "pymap-etc-shadow").write_text(f"{self.username}:{hashed}\n")
        log = self.root / "pymap.log"
        pymap = Path(sys.executable).parent / "pymap"
        tls = []
        if self.tls:
            self.make_certificate()
            tls = ["--cert", str(self.certificate), "--key", str(self.root / "key.pem")]
        command = [
            str(pymap) if pymap.exists() else "pymap",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *tls,
            "--no-service",
            "admin",
            "maildir",
            str(data),
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, log, 15)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class DovecotServer(ImapServer):
    """`dovecot -c <own config>` with its own base_dir, passwd-file and Maildir."""

    def _config(self) -> Path:
        root = self.root
        if os.geteuid() == 0:
            # Dovecot refuses mail access as root and login processes running as root.
            mail_user, login_user, internal_user = "dovecot", "dovenull", "dovecot"
        else:
            mail_user = login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(mail_user)
            os.chown(root / "mail", entry.pw_uid, entry.pw_gid)
        (root / "passwd").write_text(f"{self.username}:{{PLAIN}}{self.password}\n")
        ssl = "ssl = no"
        if self.tls:
            self.make_certificate()
            ssl = f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{root / 'key.pem'}"
        mechanisms = "plain login"
        oauth2 = ""
        if self.oauth2_url:
            (root / "oauth2.conf").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            mechanisms += " xoauth2 oauthbearer"
            oauth2 = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {root}/oauth2.conf\n}}"
            )
        config = root / "dovecot.conf"
        config.write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = safetydesk-test-{self.port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {login_user}
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{root}/mail/%u
mail_uid = {mail_user}
mail_gid = {mail_user}
{oauth2}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
  # No auth penalty (delays growing to 15 s after failed logins) for the tests' own client.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""
        )
        return config

    def start(self) -> None:
        config = self._config()
        log = self.root / "dovecot.log"
        # The daemon keeps inherited descriptors open: never hand it a pipe to wait on.
        with (self.root / "dovecot.out").open("ab") as out:
            subprocess.run(
                ["dovecot", "-c", str(config)],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while not _listening(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not listen on {self.port}: {_tail(log)}")
            time.sleep(0.02)

    def stop(self) -> None:
        config = self.root / "dovecot.conf"
        # A restart drops the clients; the master alone stopping would leave them connected.
        subprocess.run(
            ["doveadm", "-c", str(config), "kick", self.username],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        subprocess.run(
            ["doveadm", "-c", str(config), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        deadline = time.monotonic() + 15
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)


def make_server(kind: str, *, tls: bool = False, oauth2_url: str = "") -> ImapServer:
    """A started server of `kind` ("pymap" or "dovecot") in its own world-readable temp dir."""
    if kind == "dovecot" and not (shutil.which("dovecot") and shutil.which("doveadm")):
        service_missing("dovecot is not installed (run .ci/dovecot.sh)")
    if tls and not shutil.which("openssl"):
        service_missing("openssl is needed to make the test certificate")
    root = Path(tempfile.mkdtemp(prefix=f"safetydesk-{kind}-"))
    root.chmod(0o755)
    server: ImapServer = (
        DovecotServer(kind, root, tls=tls, oauth2_url=oauth2_url)
        if kind == "dovecot"
        else PymapServer(kind, root, tls=tls)
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@contextlib.contextmanager
def running_server(kind: str, *, tls: bool = False, oauth2_url: str = "") -> Iterator[ImapServer]:
    """A started server of `kind`, stopped and its folder removed afterwards."""
    server = make_server(kind, tls=tls, oauth2_url=oauth2_url)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(params=["pymap", pytest.param("dovecot", marks=pytest.mark.dovecot)])
def imap_server(request: pytest.FixtureRequest) -> Iterator[ImapServer]:
    """The same conversation, once against pymap and once against Dovecot."""
    with running_server(str(request.param)) as server:
        yield server


@pytest.fixture(params=["pymap", pytest.param("dovecot", marks=pytest.mark.dovecot)])
def tls_imap_server(request: pytest.FixtureRequest) -> Iterator[ImapServer]:
    """A server offering STARTTLS with a self-signed certificate for 127.0.0.1."""
    with running_server(str(request.param), tls=True) as server:
        yield server


@pytest.fixture
def pymap_server() -> Iterator[ImapServer]:
    with running_server("pymap") as server:
        yield server


@pytest.fixture
def build_apps() -> Iterator[Callable[[Settings], App]]:
    """Builds (and migrates) the test's apps; their engines are disposed afterwards."""
    built: list[App] = []

    def build(settings: Settings) -> App:
        app = build_app(settings, migrate=True)
        built.append(app)
        return app

    yield build
    for app in built:
        app.engine.dispose()


@pytest.fixture
def imap_settings(
    make_settings: SettingsFactory, sqlite_url: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings pointing the intake at a test server; keywords override [intake.imap] keys."""

    def make(server: ImapServer, url: str | None = None, **imap: Any) -> Settings:
        secret = tmp_path / "imap-password"
        secret.write_text(server.password)
        values: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "username": server.username,
            "password_file": str(secret),
            "processed_folder": PROCESSED,
            "poll_interval": "PT30S",
            "timeout": "PT10S",
            "reconnect_min": "PT1S",
        }
        values.update(imap)
        values = {key: value for key, value in values.items() if value is not None}
        intake = {"source": "imap", "imap": values}
        return make_settings(url or sqlite_url, intake=intake)

    return make


def write_worker_config(
    folder: Path,
    server: ImapServer,
    url: str,
    *,
    schedule: dict[str, str] | None = None,
    **imap: object,
) -> Path:
    """A config file in `folder` for a worker reading `server`'s INBOX into the database at
    `url` and delivering to a Maildir; `imap` and `schedule` add to those sections."""
    (folder / "token-secret").write_text("x" * 64)
    (folder / "imap-password").write_text(server.password)

    def lines(values: dict[str, object]) -> str:
        return "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in values.items())

    config = folder / "safetydesk.toml"
    config.write_text(
        f"""
[desk]
address = "mentor4u@ecareermentor.in"
token_secret_file = "token-secret"

[database]
url = "{url}"

[intake]
source = "imap"

[intake.imap]
host = "{server.host}"
port = {server.port}
tls = "none"
username = "{server.username}"
password_file = "imap-password"
processed_folder = "Processed"
{lines(imap)}
[outbound]
transport = "maildir"
maildir = "out"

[moderators]
addresses = ["asha.moderator@ecareermentor.in"]
trusted_authserv_ids = ["mx.ecareermentor.in"]

[schedule]
{lines(dict(schedule or {}))}
[logging]
level = "WARNING"
"""
    )
    return config
