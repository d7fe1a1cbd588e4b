"""Run a per-file job over many files on all cores: scan and prepare are CPU-bound per file (demuxing,
decoding, encoding) and FFmpeg holds the GIL often enough that threads do not scale, so they use processes."""
from __future__ import annotations

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
    functools.partial of one). One worker, or one item, runs in this process: no pool start-up to pay."""
    workers = min(workers or default_workers(), len(items))
    if workers <= 1:
        yield from map(function, items)
        return
    # Small chunks keep every worker busy when file sizes differ a lot; several per worker amortise the IPC.
    chunksize = max(1, len(items) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, items, chunksize=chunksize)
