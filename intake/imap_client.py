"""The IMAP connection: imapclient behind a small typed surface, its errors translated here."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient import exceptions as imap_exceptions

from casework.credentials import (
    LoginMethod,
    Tls,
    TokenCommand,
    TokenError,
    bearer_abort,
    bearer_response,
    fetch_token,
)

log = logging.getLogger(__name__)


class ImapError(Exception):
    """Anything that went wrong talking to the IMAP server."""


class ImapConnectionError(ImapError):
    """The network or the server failed (refused, reset, timed out, said BYE); reconnect later."""


class ImapTlsError(ImapConnectionError):
    """TLS could not be set up (handshake, certificate, no STARTTLS); never falls back to plain."""


class ImapLoginError(ImapError):
    """The login failed (refused, no such mechanism, no token): an operator has to fix it."""


class ImapCommandError(ImapError):
    """The server answered NO or BAD to a command (missing folder, no permission)."""


@dataclass(frozen=True)
class FolderState:
    """What SELECT said about a folder."""

    name: str
    uidvalidity: int
    uidnext: int
    exists: int
    permanent_flags: frozenset[bytes]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, and how the connection is secured (`tls`).

    Certificates are checked against the system's trust store, or `ca_file` when given. With an
    OAuth 2.0 `method`, `token` gives the access token at each login and `password` is unused.
    """

    host: str
    port: int
    tls: Tls
    username: str
    password: str
    timeout: float
    ca_file: str = ""
    method: LoginMethod = LoginMethod.PASSWORD
    token: TokenCommand | None = None


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn imapclient, imaplib, socket and ssl errors into this module's exceptions."""
    try:
        yield
    except ImapError:
        raise
    except imap_exceptions.LoginError as error:
        raise ImapLoginError(f"{what}: login refused: {error}") from error
    except ssl.SSLError as error:
        raise ImapTlsError(f"{what}: TLS failed: {error}") from error
    except (imaplib.IMAP4.abort, imap_exceptions.IMAPClientAbortError) as error:
        raise ImapConnectionError(f"{what}: connection lost: {error}") from error
    except TimeoutError as error:
        raise ImapConnectionError(f"{what}: timed out") from error
    except OSError as error:
        raise ImapConnectionError(f"{what}: {type(error).__name__}: {error}") from error
    except (imaplib.IMAP4.error, imap_exceptions.IMAPClientError) as error:
        raise ImapCommandError(f"{what}: {error}") from error
    except EOFError as error:
        raise ImapConnectionError(f"{what}: connection closed") from error


class ImapConnection:
    """One logged-in IMAP session; every method raises only ImapError subclasses."""

    def __init__(self, client: imapclient.IMAPClient, endpoint: Endpoint) -> None:
        self._client = client
        self._endpoint = endpoint
        self._capabilities: frozenset[bytes] = frozenset()
        self._idling = False
        self._delimiter: str | None = None
        self.refresh_capabilities()

    # --- session ---------------------------------------------------------------------------

    def refresh_capabilities(self) -> None:
        with translated("CAPABILITY"):
            self._capabilities = frozenset(c.upper() for c in self._client.capabilities())

    def has(self, capability: str) -> bool:
        return capability.upper().encode() in self._capabilities

    @property
    def capabilities(self) -> frozenset[bytes]:
        return self._capabilities

    def close(self) -> None:
        """Log out politely; a connection that is already gone is simply dropped."""
        try:
            if self._idling:
                self._client.idle_done()
            self._client.logout()
        except Exception:  # closing must never fail the caller
            with contextlib.suppress(Exception):
                self._client.shutdown()

    def abort(self) -> None:
        """Drop the socket without a word (the connection is known to be broken)."""
        with contextlib.suppress(Exception):
            self._client.shutdown()

    # --- folders ---------------------------------------------------------------------------

    def server_name(self, name: str) -> str:
        """A configured folder path ("A/B") in the server's own hierarchy delimiter."""
        if "/" not in name:
            return name
        if self._delimiter is None:
            with translated("LIST delimiter"):
                found = self._client.list_folders(directory="", pattern="")
            raw = found[0][1] if found else b"/"
            if isinstance(raw, bytes):
                raw = raw.decode("ascii", "replace")
            self._delimiter = str(raw or "/")
        return name.replace("/", self._delimiter)

    def ensure_folder(self, name: str) -> None:
        """Create folder `name` unless it is there already."""
        name = self.server_name(name)
        with translated(f"CREATE {name}"):
            if not self._client.folder_exists(name):
                self._client.create_folder(name)
                with contextlib.suppress(imap_exceptions.IMAPClientError):
                    self._client.subscribe_folder(name)

    def folder_exists(self, name: str) -> bool:
        name = self.server_name(name)
        with translated(f"LIST {name}"):
            return bool(self._client.folder_exists(name))

    def select(self, name: str, *, readonly: bool = False) -> FolderState:
        with translated(f"SELECT {name}"):
            state = self._client.select_folder(self.server_name(name), readonly=readonly)
        try:
            return FolderState(
                name=name,
                uidvalidity=int(state[b"UIDVALIDITY"]),
                uidnext=int(state.get(b"UIDNEXT", 0)),
                exists=int(state.get(b"EXISTS", 0)),
                permanent_flags=frozenset(state.get(b"PERMANENTFLAGS", ())),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise ImapCommandError(f"SELECT {name}: no usable UIDVALIDITY in {state!r}") from error

    # --- messages --------------------------------------------------------------------------

    def uids_from(self, first: int) -> list[int]:
        """UIDs >= `first` in the selected folder, ascending, deleted ones left out."""
        with translated("UID SEARCH"):
            found = self._client.search(["UID", f"{max(first, 1)}:*", "NOT", "DELETED"])
        # "n:*" always matches the highest UID, even below n (RFC 3501 6.4.8).
        return sorted(int(uid) for uid in found if int(uid) >= first)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID still present."""
        if not uids:
            return {}
        with translated("UID FETCH RFC822.SIZE"):
            data = self._client.fetch(list(uids), ["RFC822.SIZE"])
        return {int(uid): int(item[b"RFC822.SIZE"]) for uid, item in data.items()}

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The whole message of each UID, fetched with BODY.PEEK[] so \\Seen is not set."""
        if not uids:
            return {}
        with translated("UID FETCH BODY.PEEK[]"):
            data = self._client.fetch(list(uids), ["BODY.PEEK[]"])
        return {int(uid): bytes(item[b"BODY[]"]) for uid, item in data.items() if b"BODY[]" in item}

    def head_and_start(self, uid: int, body_bytes: int) -> bytes | None:
        """The header block and the first `body_bytes` of the body, for an oversized message."""
        part = f"BODY.PEEK[TEXT]<0.{body_bytes}>"
        with translated("UID FETCH BODY.PEEK[HEADER]"):
            data = self._client.fetch([uid], ["BODY.PEEK[HEADER]", part])
        item = data.get(uid)
        if item is None:
            return None
        header = bytes(item.get(b"BODY[HEADER]", b""))
        text = next((bytes(v) for k, v in item.items() if k.startswith(b"BODY[TEXT]")), b"")
        return header + text

    def add_flags(self, uids: Sequence[int], flags: Iterable[bytes]) -> None:
        if uids:
            with translated("UID STORE +FLAGS"):
                self._client.add_flags(list(uids), list(flags), silent=True)

    def move(self, uids: Sequence[int], folder: str) -> None:
        """MOVE when offered, else COPY, \\Deleted and (UID) EXPUNGE of just these UIDs."""
        if not uids:
            return
        folder = self.server_name(folder)
        with translated(f"UID MOVE to {folder}"):
            if self.has("MOVE"):
                self._client.move(list(uids), folder)
                return
            self._client.copy(list(uids), folder)
            self._client.add_flags(list(uids), [imapclient.DELETED], silent=True)
            if self.has("UIDPLUS"):
                self._client.uid_expunge(list(uids))
            else:
                self._client.expunge()

    # --- push ------------------------------------------------------------------------------

    def idle_start(self) -> None:
        with translated("IDLE"):
            self._client.idle()
            self._idling = True

    def idle_wait(self, seconds: float) -> list[Any]:
        """Untagged responses that arrived within `seconds` (empty when nothing happened)."""
        with translated("IDLE wait"):
            return list(self._client.idle_check(timeout=seconds))

    def idle_stop(self) -> None:
        if not self._idling:
            return
        self._idling = False
        with translated("DONE"):
            self._client.idle_done()


def log_in(client: imapclient.IMAPClient, endpoint: Endpoint, what: str) -> None:
    """LOGIN with the password, or AUTHENTICATE with a fresh OAuth 2.0 access token."""
    if not endpoint.method.uses_token:
        with translated(what):
            client.login(endpoint.username, endpoint.password)
        return
    with translated(what):
        capabilities = [c.decode("ascii", "replace").upper() for c in client.capabilities()]
    offered = [c.removeprefix("AUTH=") for c in capabilities if c.startswith("AUTH=")]
    try:
        token = fetch_token(endpoint.method, endpoint.token, offered)
    except TokenError as error:
        raise ImapLoginError(f"{what}: {error}") from None
    mechanism = endpoint.method.value.upper()
    exchange = BearerExchange(endpoint.method, endpoint.username, token)
    try:
        with translated(what):
            client.sasl_login(mechanism, exchange)
    except ImapLoginError as error:
        raise ImapLoginError(f"{error}{exchange.server_said()}") from None


class BearerExchange:
    """The client side of XOAUTH2 and OAUTHBEARER (RFC 7628): a token, then an error's close.

    On failure the server sends a JSON status as a challenge; the client answers it with an
    empty response (XOAUTH2) or ^A (RFC 7628 §3.2.3) and the server then says NO.
    """

    def __init__(self, method: LoginMethod, username: str, token: str) -> None:
        self._first: bytes | None = bearer_response(method, username, token)
        self._close = bearer_abort(method)
        self._status = b""

    def __call__(self, challenge: bytes) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        self._status = bytes(challenge)[:300]
        return self._close

    def server_said(self) -> str:
        """The server's JSON error status, when it sent one (e.g. {"status":"401",...})."""
        if not self._status:
            return ""
        return f" (server status: {self._status.decode('ascii', 'replace')})"


def connect(endpoint: Endpoint, *, ssl_context: ssl.SSLContext | None = None) -> ImapConnection:
    """Connect, secure the channel as configured and log in; never downgrades to plain text."""
    where = f"{endpoint.host}:{endpoint.port} ({endpoint.tls})"
    context = ssl_context or ssl.create_default_context(cafile=endpoint.ca_file or None)
    with translated(f"connect to {where}"):
        client = imapclient.IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.tls is Tls.SSL,
            ssl_context=context if endpoint.tls is Tls.SSL else None,
            timeout=endpoint.timeout,
        )
    try:
        if endpoint.tls is Tls.STARTTLS:
            with translated(f"STARTTLS with {where}"):
                if b"STARTTLS" not in {c.upper() for c in client.capabilities()}:
                    raise ImapTlsError(
                        f"STARTTLS with {where}: the server does not offer STARTTLS; "
                        "refusing to log in without TLS"
                    )
                try:
                    client.starttls(context)
                except (imaplib.IMAP4.error, imap_exceptions.IMAPClientError) as error:
                    raise ImapTlsError(f"STARTTLS with {where}: {error}") from error
        log_in(client, endpoint, f"login to {where} as {endpoint.username}")
        return ImapConnection(client, endpoint)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
