"""A loopback OAuth 2.0 token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Authority:
    """Issues bearer tokens for one user, revokes them, and answers Dovecot's introspection.

    `token_file` always holds the newest token: the tests' token command prints it.
    """

    def __init__(self, username: str, token_file: Path) -> None:
        self.username = username
        self.token_file = token_file
        self.active: set[str] = set()
        self.asked: list[str] = []  # every token Dovecot asked about, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/introspect"

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.active.add(token)
        self.token_file.write_text(token + "\n")
        return token

    def revoke_all(self) -> None:
        with self._lock:
            self.active.clear()

    def introspect(self, token: str) -> dict[str, object]:
        with self._lock:
            self.asked.append(token)
            if token in self.active:
                return {"active": True, "username": self.username}
        return {"active": False}

    @contextmanager
    def serving(self) -> Iterator[Authority]:
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                body = json.dumps(authority.introspect(form.get("token", [""])[0])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
