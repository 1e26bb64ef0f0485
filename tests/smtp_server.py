"""A real aiosmtpd server on loopback whose answers a test can script."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        reply = self.replies.pop(0) if self.replies else "250 OK"
        if reply.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return reply


@contextmanager
def smtp_server(replies: list[str] | None = None) -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler(replies=list(replies or []))
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
