"""How the desk reaches its mail servers: TLS, login method, OAuth 2.0 tokens from a command."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

# RFC 6750 §2.1: a bearer token is b64token: letters, digits and -._~+/ then optional "=".
_TOKEN_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)
_MAX_TOKEN = 16 * 1024
_MAX_DETAIL = 200


class Tls(StrEnum):
    """How a mail connection is secured; "none" is only ever allowed to a loopback host."""

    SSL = "ssl"  # implicit TLS from the first byte
    STARTTLS = "starttls"  # upgraded before login; never continues in plain text
    NONE = "none"


class LoginMethod(StrEnum):
    """How a mailbox login proves who the desk is."""

    PASSWORD = "password"
    XOAUTH2 = "xoauth2"  # Google's and Microsoft's SASL mechanism
    OAUTHBEARER = "oauthbearer"  # RFC 7628

    @property
    def uses_token(self) -> bool:
        return self is not LoginMethod.PASSWORD


def bearer_response(method: LoginMethod, username: str, token: str) -> bytes:
    """The client's first SASL message for `method` (before base64), carrying the token."""
    if method is LoginMethod.XOAUTH2:
        return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
    # RFC 7628 §3.1: a GS2 header naming the user ("=" and "," escaped, RFC 5801 §4).
    authzid = username.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()


def bearer_abort(method: LoginMethod) -> bytes:
    """The answer to the server's error challenge that ends a refused bearer exchange.

    XOAUTH2 expects an empty line; OAUTHBEARER a single ^A (RFC 7628 §3.2.3).
    """
    return b"" if method is LoginMethod.XOAUTH2 else b"\x01"


class TokenError(Exception):
    """No access token to log in with: the server does not take the mechanism, no command is
    set, or the command failed or printed something that is not an access token."""


def fetch_token(method: LoginMethod, command: TokenCommand | None, offered: Iterable[str]) -> str:
    """A fresh access token for a `method` login to a server offering the SASL mechanisms
    `offered`; checked before the command runs, so a login that cannot work costs none."""
    mechanism = method.value.upper()
    names = sorted({name.upper() for name in offered})
    if mechanism not in names:
        raise TokenError(
            f"the server does not offer {mechanism} "
            f"(its SASL mechanisms: {', '.join(names) or 'none'})"
        )
    if command is None:
        raise TokenError(f"{mechanism} needs a token command")
    return command.fetch()


@dataclass(frozen=True)
class TokenCommand:
    """A program (no shell) that prints a fresh access token on standard output.

    It runs before every login, because access tokens expire (an hour is usual): refreshing
    them is the program's job (oama, mutt_oauth2.py, a cloud CLI, `cat` of a file kept fresh).
    """

    argv: tuple[str, ...]
    timeout: float

    def fetch(self) -> str:
        """The token, or TokenError saying what went wrong (never containing the output)."""
        name = self.argv[0] if self.argv else "(empty)"
        if not self.argv:
            raise TokenError("token command is empty")
        try:
            done = subprocess.run(
                self.argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TokenError(
                f"token command {name} did not finish within {self.timeout:g} s"
            ) from None
        except OSError as error:
            raise TokenError(f"token command {name} cannot run: {error.strerror}") from None
        if done.returncode != 0:
            raise TokenError(
                f"token command {name} exited with status {done.returncode}" + _said(done.stderr)
            )
        return _read_token(name, done.stdout)


def _read_token(name: str, output: bytes) -> str:
    token = output.strip()
    if not token:
        raise TokenError(f"token command {name} printed nothing")
    if len(token) > _MAX_TOKEN:
        raise TokenError(f"token command {name} printed {len(token)} bytes, more than a token")
    text = token.decode("ascii", "replace")
    if not set(text) <= _TOKEN_CHARACTERS:
        # The output is not repeated: it might be a secret printed by mistake.
        raise TokenError(
            f"token command {name} printed something that is not a bearer token "
            "(one line of letters, digits and -._~+/=)"
        )
    return text


def _said(stderr: bytes) -> str:
    """The last line the command wrote to standard error, shortened, for the operator."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    return f": {last[:_MAX_DETAIL]}" if last else ""
