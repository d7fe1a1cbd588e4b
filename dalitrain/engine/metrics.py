"""What a run reports while it trains: one progress line per `log_every` steps, and every record as a JSON line
in `OUTPUT_DIR/metrics.jsonl` (TensorBoard too when it is installed).

The JSON file is opened in append mode and flushed per line, so a killed run keeps everything it logged and a
resumed run continues the same file.
"""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch


class MetricsLog:
    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        self._tensorboard = _tensorboard_writer(Path(output_dir) / "tensorboard")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tensorboard.add_scalar(f"{record.get('kind', 'run')}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))


class Throughput:
    """Clips per second and the share of wall time spent waiting for data, since the last `reset()`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.data_wait = 0.0
        self.clips = 0

    def add(self, clips: int, data_wait: float) -> None:
        self.clips += clips
        self.data_wait += data_wait

    def read(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return self.clips / elapsed, self.data_wait / elapsed


def memory_usage(device: torch.device) -> dict[str, float]:
    """This process's resident host memory (decode buffers, DALI's pipeline and pinned memory included), and on
    CUDA the memory PyTorch holds on `device`: allocated by tensors and reserved by its caching allocator. MB."""
    usage = {"rss_mb": _resident_bytes() / 2**20}
    if device.type == "cuda":
        usage["cuda_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        usage["cuda_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
    return usage


def _resident_bytes() -> int:
    try:  # Linux: the current resident set
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # elsewhere: the peak, which is what getrusage offers (bytes on macOS, KB on the BSDs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


def progress_line(*, epoch: int, epochs: int, step: int, steps: int, terms: dict[str, float], lr: float,
                  clips_per_s: float, data_share: float, memory: dict[str, float]) -> str:
    losses = " ".join(f"{name} {value:.4f}" for name, value in terms.items())
    cuda = (f" | cuda {memory['cuda_allocated_mb'] / 1024:.1f}/{memory['cuda_reserved_mb'] / 1024:.1f} GB"
            if "cuda_allocated_mb" in memory else "")
    return (f"epoch {epoch + 1}/{epochs} step {step}/{steps} | {losses} | lr {lr:.3g} | "
            f"{clips_per_s:.1f} clips/s | data wait {100 * data_share:.0f}% | rss {memory['rss_mb']:.0f} MB{cuda}")
