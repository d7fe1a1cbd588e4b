"""Benchmark configurations in child processes: each one's peak memory is its own, not the parent's or a
previous configuration's. A benchmark module runs `main(argv)`; with `--child SPEC` (JSON) it measures that one
configuration and prints the result as the last line of JSON. `time_training_steps` is the training step the model
benchmarks time."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Callable

import torch

from dalitrain.engine.metrics import memory_usage


def add_child_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one configuration, in a subprocess


def serve_child(args: argparse.Namespace, measure: Callable[[dict], dict]) -> bool:
    """In a child (`--child SPEC`): print `measure(spec)`; True when this process was one."""
    if args.child is None:
        return False
    print(json.dumps(measure(json.loads(args.child))))
    return True


def pick_device(choice: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def run_child(module: str, spec: dict, what: str) -> dict:
    """`python -m module --child SPEC`'s result; a failure raises one line naming `what` and the child's last."""
    done = subprocess.run([sys.executable, "-m", module, "--child", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{what} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_training_steps(backbone: torch.nn.Module, *, device: torch.device, batch: int, warmup: int, steps: int,
                        optimizer: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]) -> dict:
    """Train `backbone` + a 400-way linear head on one random batch (bf16 autocast on CUDA): `warmup` untimed
    steps, then `steps` timed ones. Returns the fastest step (as timeit: a neighbour's load on a shared machine only
    ever adds time), all of them, the peak memory (CPU: the process's peak RSS, `ru_maxrss`; CUDA:
    `max_memory_allocated`) and `step_mem_mb`, the peak's growth from before the input batch was made (model and
    optimizer built)."""
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.embed_dim, 400)).to(device).train()
    opt = optimizer([p for p in model.parameters() if p.requires_grad])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = memory_usage(device)["rss_mb"]
    frames, size = backbone.config.num_frames, backbone.config.crop_size
    video = torch.randn(batch, 3, frames, size, size, device=device)  # the input counts: it grows with the clip
    labels = torch.randint(0, 400, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(video), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":  # GPU-only: kernels run asynchronously
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"step_s": min(seconds), "step_s_all": seconds, "peak_mem_mb": peak, "step_mem_mb": peak - before}
