"""Identical runs executed once: `SingleFlight` keeps a bounded cache of finished results
and the runs in flight, so a caller asking for a run that another caller is already running
waits for that one instead of running it again.

A result the owner marks as its own (a TIMEOUT under its own deadline, which says nothing
about another caller's request) is neither shared nor kept: a caller that was waiting for it
runs the request itself. A SANDBOX_ERROR is shared with the callers waiting for it (they
asked at the same moment) but not kept, so a later request runs again on a fresh worker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from sandbox.results import DEADLINE_PASSED, RunResult, Status


class SingleFlight:
    def __init__(self, size: int, on_hit: Callable[[], None]) -> None:
        """`size` finished results are kept (0: none); `on_hit` counts each answer that was
        not run for its caller."""
        self._size = size
        self._on_hit = on_hit
        self._lock = threading.Lock()
        self._done: OrderedDict[str, RunResult] = OrderedDict()
        self._running: dict[str, Future] = {}

    def run(self, key: str, compute: Callable[[], tuple[RunResult, bool]],
            deadline: float | None) -> RunResult:
        """The result for `key`: kept, another caller's (waited for until `deadline`,
        time.monotonic()), or `compute()`'s, which returns the result and whether it may be
        shared."""
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    self._on_hit()
                    return self._done[key]
                waiting = self._running.get(key)
                if waiting is None:
                    mine: Future = Future()
                    self._running[key] = mine
                    break
            try:
                result, shared = waiting.result(
                    None if deadline is None else max(0.0, deadline - time.monotonic()))
            except TimeoutError:  # concurrent.futures raises the builtin one
                return RunResult(Status.TIMEOUT, detail=DEADLINE_PASSED)
            if shared:
                self._on_hit()
                return result
            # The run it joined was its owner's alone: ask again, to run it here.
        try:
            result, shared = compute()
            mine.set_result((result, shared))
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._running.pop(key, None)
        if shared and result.verdict is not Status.SANDBOX_ERROR:
            with self._lock:
                self._done[key] = result
                while len(self._done) > self._size:
                    self._done.popitem(last=False)
        return result
