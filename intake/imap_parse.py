"""Parsing a fetched batch in a helper process, so the database path only runs transactions."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from intake.bounds import Limits, limit_memory, prescan
from intake.classify import ClassifyContext
from intake.insights import Insights, gather_insights
from intake.parse import ParsedMessage, parse_message

log = logging.getLogger(__name__)


def watch_parent(parent: int) -> None:
    """In a helper: exit as soon as the worker that started it is gone (even by SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def start_helper(parent: int, memory_limit: int) -> None:
    """In a helper: the same address-space limit as the bounded parser, and a parent watch."""
    limit_memory(memory_limit)
    watch_parent(parent)


def be_ready() -> None:
    """In a helper: nothing; run once at the start, so that spawning and imports are done then."""


@dataclass(frozen=True)
class Prepared:
    """A message parsed in a helper, with what the pipeline reads from it alone (when asked)."""

    parsed: ParsedMessage
    insights: Insights | None = None


def parse_or_none(
    raw: bytes, limits: Limits, context: ClassifyContext | None = None
) -> Prepared | None:
    """The parsed message, or None for the pipeline's bounded parser to handle (and refuse)."""
    try:
        prescan(raw, limits)
        parsed = parse_message(
            raw,
            max_bytes=limits.max_message_bytes,
            max_attachment_bytes=limits.max_attachment_bytes,
        )
    except Exception:
        return None
    try:
        insights = None if context is None else gather_insights(parsed, context)
    except Exception:  # the pipeline reads it again, and quarantines it if it must
        insights = None
    return Prepared(parsed, insights)


def parse_chunk(
    raws: Sequence[bytes], limits: Limits, context: ClassifyContext | None = None
) -> list[Prepared | None]:
    return [parse_or_none(raw, limits, context) for raw in raws]


@dataclass(frozen=True)
class Parsing:
    """A batch handed to the helpers: its chunks, each with its size, parsed in order."""

    count: int
    chunks: tuple[tuple[int, Future[list[Prepared | None]]], ...] = ()
    executor: ProcessPoolExecutor | None = None


class ParseAhead:
    """Parses messages in `workers` helper processes while the caller commits earlier ones.

    A batch is handed over with `submit` as soon as it is read, so the helpers work on it while
    the caller still processes the batch before; `results` then yields it in order. Chunks are
    large (50 messages): each one costs the worker a hand-off and an answer to take in, under
    the interpreter lock its pipeline thread needs; being ahead, no chunk keeps that thread
    waiting. The helpers obey the same limits as the pipeline's bounded parser (header size,
    MIME depth, attachment size, memory); a chunk that overruns its deadline has its helpers
    killed, and the rest of its batch, with any batch already handed to those helpers, is parsed
    by the pipeline, one bounded message at a time. With no workers, or a batch too small to be
    worth the hand-off, every item is None. `submit`, `results` and `close` may be called from
    different threads.
    """

    def __init__(
        self,
        limits: Limits,
        workers: int,
        *,
        context: ClassifyContext | None = None,
        min_batch: int = 16,
        chunk: int = 50,
    ) -> None:
        self._limits = limits
        self._context = context
        self._workers = workers
        self._min_batch = min_batch
        self._chunk = chunk
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._starting: list[Future[None]] = []

    def start(self) -> None:
        """Start the helpers now, in the background: a helper takes a few hundred milliseconds
        to start and import the parser, which the first batch would otherwise wait for."""
        if self._workers <= 0:
            return
        with self._lock:
            executor = self._ensure()
            self._starting = [executor.submit(be_ready) for _ in range(self._workers)]

    def wait_ready(self, timeout: float) -> bool:
        """Whether the helpers `start` began are up (or failed: a batch then falls back) in time."""
        return not wait(self._starting, timeout).not_done

    def submit(self, raws: Sequence[bytes]) -> Parsing:
        """Hand `raws` to the helpers now, in chunks; with a `context`, each message comes back
        with its insights (`intake.insights`)."""
        if self._workers <= 0 or len(raws) < self._min_batch:
            return Parsing(len(raws))
        pieces = [raws[i : i + self._chunk] for i in range(0, len(raws), self._chunk)]
        with self._lock:
            executor = self._ensure()
            try:
                chunks = tuple(
                    (len(piece), executor.submit(parse_chunk, piece, self._limits, self._context))
                    for piece in pieces
                )
            except (BrokenProcessPool, OSError, RuntimeError) as error:
                log.warning("parse helper failed (%s); the pipeline parses this batch", error)
                self._close(executor, kill=True)
                return Parsing(len(raws))
        return Parsing(len(raws), chunks, executor)

    def results(self, parsing: Parsing) -> Iterator[Prepared | None]:
        """One item per message of `parsing`, in order, each as soon as its chunk is parsed."""
        produced = 0
        try:
            for count, future in parsing.chunks:
                parsed = future.result(timeout=self._deadline(count))
                produced += len(parsed)
                yield from parsed
        except (BrokenProcessPool, CancelledError, OSError, RuntimeError, TimeoutError) as error:
            log.warning("parse helper failed (%s); parsing the rest in the pipeline", error)
            with self._lock:
                if parsing.executor is not None:
                    self._close(parsing.executor, kill=True)
        yield from (None for _ in range(parsing.count - produced))

    def _deadline(self, count: int) -> float | None:
        """How long to wait for a chunk of `count` once the caller needs it: the parse timeout,
        and a tenth of a second for each message (a hundred times a usual parse). A chunk that
        only ran slow costs no message: the pipeline parses the rest, each within its limits."""
        timeout = self._limits.parse_timeout
        return None if timeout <= 0 else timeout + 0.1 * count

    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: the worker has threads and open sockets that a fork must not copy.
            self._executor = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_helper,
                initargs=(os.getpid(), self._limits.parse_memory_bytes),
            )
        return self._executor

    def close(self, *, kill: bool = False) -> None:
        with self._lock:
            if self._executor is not None:
                self._close(self._executor, kill=kill)

    def _close(self, executor: ProcessPoolExecutor, *, kill: bool) -> None:
        """Shut `executor` down; when it is the current one, the next batch starts another."""
        if executor is self._executor:
            self._executor = None
            self._starting = []
        if kill:  # a helper stuck in a pathological parse never finishes by itself
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)
