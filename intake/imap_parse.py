"""Parsing a fetched batch in a helper process, so the database path only runs transactions."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from intake.parse import ParsedMessage, parse_message

log = logging.getLogger(__name__)


def watch_parent(parent: int) -> None:
    """In a helper: exit as soon as the worker that started it is gone (even by SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def parse_or_none(raw: bytes, max_bytes: int) -> ParsedMessage | None:
    """The parsed message, or None when it cannot be parsed (the pipeline then quarantines it)."""
    try:
        return parse_message(raw, max_bytes=max_bytes)
    except Exception:
        return None


class ParseAhead:
    """Parses messages in `workers` helper processes while the caller commits earlier ones.

    With no workers, or a batch too small to be worth the hand-off, every item is None and the
    pipeline parses inline. A helper that dies is replaced by inline parsing, never by a failure.
    """

    def __init__(self, max_bytes: int, workers: int, *, min_batch: int = 16) -> None:
        self._max_bytes = max_bytes
        self._workers = workers
        self._min_batch = min_batch
        self._executor: Executor | None = None

    def parse_all(self, raws: Sequence[bytes]) -> Iterator[ParsedMessage | None]:
        """One item per raw message, in order; produced while the caller works on the earlier."""
        if self._workers <= 0 or len(raws) < self._min_batch:
            yield from (None for _ in raws)
            return
        executor = self._ensure()
        produced = 0
        try:
            results = executor.map(
                partial(parse_or_none, max_bytes=self._max_bytes), raws, chunksize=8
            )
            for parsed in results:
                produced += 1
                yield parsed
        except (BrokenProcessPool, OSError, RuntimeError) as error:
            log.warning("parse helper failed (%s); parsing inline", error)
            self.close()
            yield from (None for _ in raws[produced:])

    def _ensure(self) -> Executor:
        if self._executor is None:
            # spawn: the worker has threads and open sockets that a fork must not copy.
            self._executor = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=watch_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
