"""Progress bars for the long commands that are not training (synth, scan, prepare, evaluation): tqdm on stderr
when the user watches a terminal, nothing otherwise (logs, CI, pipes). Training keeps its own log lines."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def progress(items: Iterable[Item], *, total: Optional[int] = None, desc: str, unit: str = "file") -> Iterator[Item]:
    """`items`, with a bar while a terminal watches; the iterable itself otherwise."""
    if not interactive():
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
