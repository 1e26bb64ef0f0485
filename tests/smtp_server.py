"""A real aiosmtpd server on loopback whose answers a test can script."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ScriptedHandler:
    """Answers DATA with the next scripted reply (then 250 forever) and keeps what it accepted."""

    replies: list[str] = field(default_factory=list)
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    attempts: int = 0
    peers: list[Any] = field(default_factory=list)  # the client's (host, port) per DATA

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        self.peers.append(session.peer)
        reply = self.replies.pop(0) if self.replies else "250 OK"
        if reply.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return reply


@dataclass
class BearerHandler(ScriptedHandler):
    """Also takes AUTH XOAUTH2 and OAUTHBEARER, accepting the tokens `accepts` says are good.

    A refused token gets the JSON error challenge and then 535, as Gmail and Outlook do.
    """

    accepts: Callable[[str], bool] = lambda _token: False
    tokens: list[str] = field(default_factory=list)  # every token presented, in order

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, b"")

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, b"n,")

    async def _bearer(self, server: Any, args: list[str], start: bytes) -> AuthResult:
        blob = base64.b64decode(args[1]) if len(args) > 1 else b""
        fields = dict(
            part.split("=", 1) if "=" in part else (part, "")
            for part in blob.decode().split("\x01")
            if part
        )
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.tokens.append(token)
        if blob.startswith(start) and self.accepts(token):
            return AuthResult(success=True)
        await server.challenge_auth('{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False)


@contextmanager
def serving(handler: Any, **options: Any) -> Iterator[Controller]:
    """An aiosmtpd server for `handler` on a free loopback port, stopped afterwards."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@contextmanager
def smtp_server(replies: list[str] | None = None) -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler(replies=list(replies or []))
    with serving(handler) as controller:
        yield handler, controller.port


@contextmanager
def bearer_smtp_server(
    accepts: Callable[[str], bool],
) -> Iterator[tuple[BearerHandler, Controller]]:
    """A plain-text loopback server that demands AUTH and offers only the bearer mechanisms."""
    handler = BearerHandler(accepts=accepts)
    with serving(
        handler,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    ) as controller:
        yield handler, controller


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def tls_smtp_server(
    folder: Path, *, implicit: bool, login: tuple[str, str]
) -> Iterator[tuple[ScriptedHandler, int, Path]]:
    """An aiosmtpd server that demands TLS (implicit or STARTTLS) and AUTH LOGIN/PLAIN."""
    cert, key = make_certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = ScriptedHandler()
    port = free_port()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = (auth.login.decode(), auth.password.decode()) == login
        return AuthResult(success=ok, handled=False)

    options: dict[str, Any] = {"authenticator": authenticate, "auth_required": True}
    if implicit:
        controller: Controller = _ImplicitTlsController(
            handler,
            hostname="127.0.0.1",
            port=port,
            ssl_context=context,
            **options,
            auth_require_tls=False,
        )
    else:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            **options,
        )
    controller.start()
    try:
        yield handler, port, cert
    finally:
        controller.stop()


class _ImplicitTlsController(Controller):  # type: ignore[misc]
    """aiosmtpd's readiness probe speaks plaintext; probe through TLS instead."""

    def _trigger_server(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection((self.hostname, self.port), 1.0) as raw,
            context.wrap_socket(raw) as wrapped,
        ):
            wrapped.recv(1024)
