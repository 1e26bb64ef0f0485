"""Sending by SMTP (aiosmtplib): one connection per delivery run, reused message by message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Final

import aiosmtplib

from casework.credentials import (
    LoginMethod,
    Tls,
    TokenCommand,
    TokenError,
    bearer_abort,
    bearer_response,
    fetch_token,
)
from outbound.delivery import SendError

# A reused connection the server closed while idle fails at its first command (MAIL FROM):
# nothing was accepted, so the message is sent again at once over a new connection.
_GONE: Final = (aiosmtplib.SMTPServerDisconnected, ConnectionError)
# RFC 5321 §3.8: 421 says the server is closing the channel (often "too many messages in this
# session"); at MAIL FROM nothing was accepted either.
_CLOSING = 421


@dataclass(frozen=True)
class SmtpTransport:
    """aiosmtplib over SSL, STARTTLS, or plaintext (loopback only; checked by the config).

    `method` is how it logs in when `username` is set: the password, or an OAuth 2.0 access
    token from `token` (XOAUTH2, or OAUTHBEARER per RFC 7628), fetched for every connection.
    """

    host: str
    port: int
    tls: Tls
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    ca_file: str | None = None
    method: LoginMethod = LoginMethod.PASSWORD
    token: TokenCommand | None = None

    @contextlib.contextmanager
    def connect(self) -> Iterator[SmtpLink]:
        link = SmtpLink(self)
        try:
            yield link
        finally:
            link.close()

    def probe(self) -> str:
        """Connect and log in as a delivery run would, then quit; raises SendError."""
        with self.connect() as link:
            return link.probe()


class SmtpLink:
    """A connection opened at the first message and kept for the next ones.

    When the server cannot be reached or refuses the login, the remaining messages of the
    run fail at once with the same error instead of each waiting out the timeout again.
    """

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._runner = asyncio.Runner()
        self._client: aiosmtplib.SMTP | None = None
        self._broken: SendError | None = None
        self.connections = 0  # opened so far

    def send(self, sender: str, recipient: str, raw: bytes, key: str) -> None:
        if self._broken is not None:
            raise SendError(str(self._broken), permanent=False)
        try:
            self._runner.run(self._send(sender, recipient, raw))
        except SendError:
            raise
        except aiosmtplib.SMTPResponseException as error:  # RCPT refusals included
            raise SendError(f"{error.code} {error.message}", permanent=error.code >= 500) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise SendError(f"{type(error).__name__}: {error}", permanent=False) from error

    def probe(self) -> str:
        """Open the connection now and say what the server is and whether it let us in."""
        client = self._runner.run(self._open())
        greeting = "ESMTP" if client.esmtp_extensions else "SMTP"
        transport = self._transport
        if not transport.username:
            return f"{greeting} greeting"
        return f"{greeting} greeting, login accepted ({transport.method.value})"

    def close(self) -> None:
        try:
            if self._client is not None:
                self._runner.run(self._quit())
        finally:
            self._runner.close()

    async def _send(self, sender: str, recipient: str, raw: bytes) -> None:
        client = self._client
        if client is not None:
            try:
                await self._step(client.mail(sender))
            except _GONE:  # closed while idle: nothing was accepted, so start over
                client = None
            except aiosmtplib.SMTPResponseException as error:
                if error.code != _CLOSING:
                    raise
                self._drop()
                client = None
        if client is None:
            client = await self._open()
            await self._step(client.mail(sender))
        await self._step(client.rcpt(recipient))
        await self._step(client.data(raw))

    async def _step(self, command: Awaitable[object]) -> None:
        """One command of the mail transaction: a refusal resets it, a failure drops the link."""
        try:
            await command
        except aiosmtplib.SMTPResponseException:
            await self._reset()
            raise
        except BaseException:
            self._drop()
            raise

    async def _open(self) -> aiosmtplib.SMTP:
        transport = self._transport
        client = aiosmtplib.SMTP(
            hostname=transport.host,
            port=transport.port,
            use_tls=transport.tls is Tls.SSL,
            start_tls=transport.tls is Tls.STARTTLS,
            timeout=transport.timeout,
            cert_bundle=transport.ca_file,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # the AUTH methods are read from the EHLO reply
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if transport.username:
                await log_in(client, transport)
        except aiosmtplib.SMTPAuthenticationError as error:
            client.close()
            # Our own login was refused: the operator's problem, not the message's. Keep it.
            self._broken = SendError(
                f"login refused: {error.code} {error.message}", permanent=False
            )
            raise self._broken from error
        except SendError as error:
            client.close()
            self._broken = error
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            client.close()
            self._broken = SendError(f"{type(error).__name__}: {error}", permanent=False)
            raise self._broken from error
        self._client = client
        self.connections += 1
        return client

    async def _reset(self) -> None:
        """RSET after a refused message; a connection that cannot even do that is dropped."""
        if self._client is None:
            return
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop()

    async def _quit(self) -> None:
        if self._client is None:
            return
        try:
            await self._client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop()
        self._client = None

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


async def log_in(client: aiosmtplib.SMTP, transport: SmtpTransport) -> None:
    """AUTH with the password, or with a fresh OAuth 2.0 access token."""
    if not transport.method.uses_token:
        await client.login(transport.username, transport.password)
        return
    try:
        token = fetch_token(transport.method, transport.token, client.server_auth_methods)
    except TokenError as error:
        raise SendError(f"login impossible: {error}", permanent=False) from None
    await auth_bearer(client, transport.method, transport.username, token)


async def auth_bearer(
    client: aiosmtplib.SMTP, method: LoginMethod, username: str, token: str
) -> None:
    """SMTP AUTH (RFC 4954) by XOAUTH2 or OAUTHBEARER (RFC 7628), with an initial response."""
    first = base64.b64encode(bearer_response(method, username, token))
    response = await client.execute_command(b"AUTH", method.value.upper().encode(), first)
    status = ""
    if response.code == 334:
        # The server's error status comes as a challenge; the exchange must still be closed.
        status = _decoded(response.message)
        response = await client.execute_command(base64.b64encode(bearer_abort(method)))
    if response.code != 235:
        said = f" (server status: {status})" if status else ""
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message + said)


def _decoded(challenge: str) -> str:
    """A base64 challenge as text for an error message, shortened; "" when it is not base64."""
    try:
        return base64.b64decode(challenge, validate=True)[:300].decode("ascii", "replace")
    except ValueError:
        return ""
