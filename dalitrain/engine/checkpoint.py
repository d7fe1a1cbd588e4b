"""Checkpoints that survive a crash at any moment, and loading that survives a damaged file.

Writing: temporary file in the same directory, fsync, rename over the final name, fsync the directory; a reader
sees either the old file or the complete new one, never half of one; a write that fails (disk full, read-only
directory) removes its temporary file and raises CheckpointWriteError. The last `keep_last` step checkpoints are
kept, plus `best.pt`. Loading uses `torch.load(weights_only=True)`: a checkpoint holds only tensors and plain
Python values, so a file from elsewhere cannot run code. A damaged checkpoint is reported by name and the
previous one is used, so one bad write never costs more than the steps since the previous checkpoint.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from dalitrain.engine.distributed import is_main_process
from dalitrain.errors import DalitrainError
from dalitrain.models.pretrained import CheckpointError

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "step_in_epoch", "global_step")
_STEP_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointWriteError(DalitrainError, OSError):
    """A checkpoint could not be written (disk full, read-only or missing directory); nothing was replaced."""


def save_atomic(state: dict, path: Path) -> None:
    """Raises CheckpointWriteError, one line, with the temporary file removed and the previous files untouched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        with contextlib.suppress(OSError):  # nothing to remove when the directory itself is unusable
            tmp.unlink()
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        raise CheckpointWriteError(f"{path}: checkpoint not written ({reason})") from None
    directory = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, wrong format, disallowed global: all mean "not usable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: damaged or not a dalitrain checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a dalitrain checkpoint (top level is {type(state).__name__})")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a dalitrain training checkpoint (missing {', '.join(missing)})")
    return state


class CheckpointDir:
    """`DIR/step-00001234.pt` files (newest = highest global step) and `DIR/best.pt`."""

    def __init__(self, directory: str | Path, keep_last: int):
        self.directory = Path(directory)
        self.keep_last = max(keep_last, 1)

    def step_files(self) -> list[Path]:
        """Oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _STEP_NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict, *, best: bool) -> Path:
        path = self.directory / f"step-{state['global_step']:08d}.pt"
        save_atomic(state, path)
        if best:
            save_atomic(state, self.directory / "best.pt")
        for old in self.step_files()[: -self.keep_last]:
            old.unlink()
        return path

    def latest(self) -> Optional[tuple[Path, dict[str, Any]]]:
        """The newest loadable checkpoint; each damaged one on the way is reported on stderr and skipped."""
        for path in reversed(self.step_files()):
            try:
                return path, load_checkpoint(path)
            except CheckpointError as err:
                if is_main_process():  # every rank reads the same files
                    print(f"dalitrain: warning: {err}; using the previous checkpoint", file=sys.stderr, flush=True)
        return None
