"""Random bytes from the operating system, read a block at a time."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class Entropy:
    """Bytes from `read` (os.urandom), handed out in pieces of a block read at once.

    Each os.urandom call lets go of the interpreter lock, and while another thread of the
    worker runs Python (the IMAP side reading a batch), taking the lock back can cost the
    calling thread up to the switch interval (5 ms): a few calls per email added up to a
    twentieth of the worker's time. A block of 4 KiB serves 256 Message-IDs. A child process
    made by fork starts a block of its own, so that no two processes hand out the same bytes.
    """

    def __init__(self, block: int = 4096, read: Callable[[int], bytes] = os.urandom) -> None:
        if block < 1:
            raise ValueError("the block must hold at least one byte")
        self._block = block
        self._read = read
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        self._pid = 0

    def take(self, count: int) -> bytes:
        """`count` bytes no one has been given before."""
        if count < 0:
            raise ValueError(f"cannot take {count} bytes")
        if count > self._block:
            return self._read(count)
        with self._lock:
            pid = os.getpid()
            if pid != self._pid or self._offset + count > len(self._buffer):
                self._buffer, self._offset, self._pid = self._read(self._block), 0, pid
            start, self._offset = self._offset, self._offset + count
            return self._buffer[start : self._offset]
