"""Per-message limits: a cheap pre-scan of the raw bytes and a parse bounded in time and memory."""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import threading
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from intake.parse import ParsedMessage, parse_message

log = logging.getLogger(__name__)


class MessageRefused(Exception):
    """The message breaks a per-message limit; it goes to quarantine with this reason."""


@dataclass(frozen=True)
class Limits:
    """How much of one message the desk is willing to read, and for how long."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_header_bytes: int = 256 * 1024
    max_mime_depth: int = 20
    max_attachment_bytes: int = 20 * 1024 * 1024
    parse_timeout: float = 10.0  # seconds; 0 parses in the calling thread with no time limit
    parse_memory_bytes: int = 1024 * 1024 * 1024


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""", re.I)


def header_block_size(raw: bytes) -> int:
    """The length of the top-level header block (the whole message when it has no body)."""
    found = _BLANK_LINE.search(raw)
    return len(raw) if found is None else found.start()


def mime_depth(raw: bytes, stop_above: int | None = None) -> int:
    """An upper estimate of multipart nesting, from boundary declarations and delimiter lines.

    RFC 2046 §5.1.1: a part ends at the next delimiter of an enclosing multipart, so a delimiter
    line of an outer boundary closes every part opened inside it. With `stop_above` the scan
    ends as soon as the depth passes it, so the stack (and the work per line) stays bounded.
    """
    stack: list[bytes] = []
    deepest = 0
    for line in raw.splitlines():
        if line.startswith(b"--") and stack:
            token = line[2:].rstrip()
            closing = token.endswith(b"--")
            if closing:
                token = token[:-2]
            if token in stack:  # the innermost part with this boundary, and all inside it
                index = len(stack) - 1 - stack[::-1].index(token)
                del stack[index if closing else index + 1 :]
            continue
        if b"=" not in line:  # no parameter, no boundary declaration
            continue
        for found in _BOUNDARY.finditer(line):
            stack.append((found.group(1) or found.group(2)).rstrip())
            deepest = max(deepest, len(stack))
            if stop_above is not None and deepest > stop_above:
                return deepest
    return deepest


def prescan(raw: bytes, limits: Limits) -> None:
    """Refuse what the parser should never see: huge header blocks, absurd MIME nesting."""
    size = header_block_size(raw)
    if size > limits.max_header_bytes:
        raise MessageRefused(
            f"header block of {size} bytes is over max_header_bytes ({limits.max_header_bytes})"
        )
    depth = mime_depth(raw[: limits.max_message_bytes], stop_above=limits.max_mime_depth)
    if depth > limits.max_mime_depth:
        raise MessageRefused(
            f"MIME nesting of more than {limits.max_mime_depth} levels (max_mime_depth)"
        )


class ParserCrashed(Exception):
    """The parser raised inside its child process; the message goes to quarantine."""


def _serve(connection: Connection, memory_limit: int) -> None:
    """The child: parse each message it is sent, under an address-space limit, until EOF."""
    # Ctrl-C reaches the whole process group; the worker decides when to stop, not the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_memory(memory_limit)
    while True:
        try:
            raw, max_bytes, max_attachment_bytes = connection.recv()
        except EOFError:
            return
        result: tuple[str, object]
        try:
            result = (
                "ok",
                parse_message(raw, max_bytes=max_bytes, max_attachment_bytes=max_attachment_bytes),
            )
        except MemoryError:
            result = ("memory", None)
        except Exception as error:  # reported to the parent, which quarantines the message
            result = ("error", f"{type(error).__name__}: {error}")
        del raw
        try:
            connection.send(result)
        except MemoryError:
            connection.send(("memory", None))


def limit_memory(limit: int) -> None:
    import resource

    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class BoundedParser:
    """Parses in a child process that is killed when it overruns its time or memory.

    A thread cannot be stopped once a pathological parse has started; a process can, and
    its address space can be limited (RLIMIT_AS) so one message cannot exhaust the host.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._child: tuple[BaseProcess, Connection] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()

    def parse(self, raw: bytes) -> ParsedMessage:
        """The parsed message, or MessageRefused naming the limit it broke."""
        limits = self._limits
        prescan(raw, limits)
        if limits.parse_timeout <= 0:
            return parse_message(
                raw,
                max_bytes=limits.max_message_bytes,
                max_attachment_bytes=limits.max_attachment_bytes,
            )
        with self._lock:  # one message at a time per parser
            return self._parse_in_child(raw)

    def _parse_in_child(self, raw: bytes) -> ParsedMessage:
        limits = self._limits
        _, connection = self._ensure_child()
        try:
            connection.send((raw, limits.max_message_bytes, limits.max_attachment_bytes))
            if not connection.poll(limits.parse_timeout):
                self._kill_child()
                raise MessageRefused(
                    f"parsing took longer than parse_timeout ({limits.parse_timeout:g}s)"
                )
            status, value = connection.recv()
        except (EOFError, OSError):  # the child died: the kernel or RLIMIT_AS stopped it
            self._kill_child()
            raise MessageRefused(
                f"the parser process died (memory limit {limits.parse_memory_bytes} bytes?)"
            ) from None
        if status == "memory":
            self._kill_child()
            raise MessageRefused(
                f"parsing needed more than parse_memory_bytes ({limits.parse_memory_bytes})"
            )
        if status == "error":
            raise ParserCrashed(str(value))
        assert isinstance(value, ParsedMessage)
        return value

    def close(self) -> None:
        with self._lock:
            self._kill_child()

    def _ensure_child(self) -> tuple[BaseProcess, Connection]:
        if self._child is None or not self._child[0].is_alive():
            self._kill_child()
            context = multiprocessing.get_context("forkserver")
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(child, self._limits.parse_memory_bytes),
                name="safetydesk-parser",
                daemon=True,
            )
            process.start()
            child.close()
            self._child = (process, parent)
            # The child goes when this parser does, even if nobody calls close().
            self._finalizer = weakref.finalize(self, _stop_child, process, parent)
        return self._child

    def _kill_child(self) -> None:
        if self._child is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            process, connection = self._child
            self._child = None
            _stop_child(process, connection)


def _stop_child(process: BaseProcess, connection: Connection) -> None:
    connection.close()
    process.kill()
    process.join(5)
