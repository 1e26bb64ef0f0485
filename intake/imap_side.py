"""The IMAP side of a pass on a thread of its own: its steps run in order, none after one failed."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


class ImapSide:
    """Runs a pass's reads and settlements one after another while the pipeline works.

    Once a step has failed, every later step fails at once with the same error, without
    touching the connection: a batch is never settled, nor the cursor moved past it, when the
    batch before it was not.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap")
        self.failure: BaseException | None = None

    def submit(self, step: Callable[[], T]) -> Future[T]:
        return self._pool.submit(self._run, step)

    def _run(self, step: Callable[[], T]) -> T:
        if self.failure is not None:
            raise self.failure
        try:
            return step()
        except BaseException as error:
            self.failure = error
            raise

    def close(self) -> None:
        """Wait for every step submitted (a step not begun still runs: settling must)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ImapSide:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
