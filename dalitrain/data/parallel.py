"""Run a per-file job over many files on all cores: scan and prepare are CPU-bound per file (demuxing,
decoding, encoding) and FFmpeg holds the GIL often enough that threads do not scale, so they use processes."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Optional, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def default_workers() -> int:
    return os.cpu_count() or 1


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item],
                     workers: Optional[int] = None) -> Iterator[Result]:
    """`function(item)` for every item, in order. `function` must be picklable (a module-level function or a
    functools.partial of one). One worker, or one item, runs in this process: no pool start-up to pay.

    As with any multiprocessing start method but fork, a calling script needs the `if __name__ == "__main__":`
    guard. The first pool of a process pays about a second to start the fork server; later ones do not."""
    workers = min(workers or default_workers(), len(items))
    if workers <= 1:
        yield from map(function, items)
        return
    # Small chunks keep every worker busy when file sizes differ a lot; several per worker amortise the IPC.
    chunksize = max(1, len(items) // (workers * 8))
    # Workers come from a fork server, not from forking the caller: the caller may be a training process with
    # CUDA or DALI threads running, which a plain fork() copies into a broken state.
    # The server imports the job's module once (PyAV, ...), so that each worker starts without importing it.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([getattr(function, "func", function).__module__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(function, items, chunksize=chunksize)
