"""Decode workers with a deadline: a decode that hangs (FFmpeg and decord are known to on some files) costs its
file, never the run.

Daemon threads take decode calls from one queue. `result(future, timeout)` waits at most `timeout` seconds from the
moment a worker STARTED the call (time spent queued behind other decodes does not count). A call past its deadline
raises DecodeTimeout (a DecodeError: the loader quarantines the file and replaces the sample as for any bad file)
and is abandoned: Python cannot stop a thread inside a C call, so its thread is left to finish or hang on its own
and a fresh thread takes its place, keeping the pool's size. Daemon threads are not joined at exit, so a hung one
never blocks the process from ending.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Callable, Optional

from dalitrain.pipelines.decode import DecodeError


class DecodeTimeout(DecodeError):
    """A decode call ran past `data.decode_timeout_s`."""


class DecodeWorkers:
    def __init__(self, threads: int, name: str):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._name, self._spawned, self._threads = name, 0, threads
        for _ in range(threads):
            self._spawn()

    def _spawn(self) -> None:
        self._spawned += 1
        threading.Thread(target=self._work, name=f"{self._name}-{self._spawned}", daemon=True).start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            future.started_at = time.monotonic()
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # handed to the caller, as concurrent.futures does
                future.set_exception(err)

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._tasks.put((future, fn, args))
        return future

    def result(self, future: Future, timeout: Optional[float], what: str):
        """The call's result; DecodeTimeout naming `what` when it ran more than `timeout` seconds (None: no limit)."""
        while True:
            started = getattr(future, "started_at", None)
            wait = None if timeout is None else timeout if started is None else started + timeout - time.monotonic()
            try:
                return future.result(timeout=None if wait is None else max(wait, 0.0))
            except FutureTimeout:
                if started is not None or getattr(future, "started_at", None) is not None:
                    self._spawn()  # its thread is stuck in the call: keep the pool's size
                    raise DecodeTimeout(f"{what}: decoding did not finish within {timeout} s "
                                        "(data.decode_timeout_s); abandoned") from None

    def shutdown(self) -> None:
        """Idle workers exit; one still inside a call exits after it (or never, if hung: it is a daemon)."""
        for _ in range(self._spawned):
            self._tasks.put(None)
