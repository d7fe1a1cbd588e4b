"""Preemption: a signal asks the run to stop at the next optimizer step, save, and exit to be restarted.

SLURM (`#SBATCH --signal=B:USR1@120`, or SIGTERM at the time limit and on `scancel`) and Kubernetes (SIGTERM,
then SIGKILL after `terminationGracePeriodSeconds`) warn a job before killing it. On SIGTERM or SIGUSR1 every rank
finishes its current step; the ranks agree at the step boundary (the flag travels with the step's finiteness check,
so a signal that reached one rank only stops all of them at the same step), rank 0 writes one checkpoint with the
data position (atomically, as every checkpoint), and the process exits with `PREEMPTED_EXIT_CODE`. The next launch
of the same command resumes from that checkpoint and logs the losses the uninterrupted run would have.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run again


class Preempted(RuntimeError):
    """Raised by the trainer after it saved the checkpoint a preempted run resumes from."""


class PreemptionSignals:
    """While active (`with`), SIGTERM and SIGUSR1 only set `received`; the previous handlers come back on exit.
    Signal handlers can only be installed from the main thread; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received = signum

    def __enter__(self) -> "PreemptionSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
