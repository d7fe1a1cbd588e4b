"""`dalitrain bench model [--quick] [--json FILE]`: MViTv2 training-step throughput and peak memory.

For each model (mvitv2_s_16x4 at a CPU-sized 8x112x112, batch 2; mvitv2_tiny at 8x64x64, batch 4; on CUDA the
S model runs at its 16x224x224) it compares, in one run:
  attention  "explicit" (softmax(q k^T) v materialised, as PySlowFast) vs "fused" (dalitrain.kernels)
  blocks     plain vs activation checkpointing
Each configuration trains in its own child process (forward + backward + AdamW step on a linear classifier), so
that peak memory is honest: the child's peak RSS on the CPU (`ru_maxrss`, which includes the ~0.3 GB of the
imported libraries; `peak_rss_step_mb` subtracts the RSS before the first step), `torch.cuda.max_memory_allocated`
on CUDA, where the step runs under bf16 autocast and TFLOP/s are derived from the GMACs of `dalitrain info`
(a training step ~ 3x the forward's multiply-adds). Ratios are against the PySlowFast-like baseline (explicit,
plain) of the same model measured in the same run; absolute numbers on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dalitrain.benchmarks.children import (add_child_options, pick_device, run_child, serve_child,
                                            time_training_steps)
from dalitrain.figures import bar_chart, save
from dalitrain.models.info import describe_model
from dalitrain.models.registry import create_backbone

BASELINE = ("explicit", False)
VARIANTS = [("explicit", False), ("fused", False), ("explicit", True), ("fused", True)]


def workloads(device: str) -> list[dict]:
    s_frames, s_size = (16, 224) if device == "cuda" else (8, 112)
    return [{"model": "mvitv2_s_16x4", "frames": s_frames, "size": s_size, "batch": 2},
            {"model": "mvitv2_tiny", "frames": 8, "size": 64, "batch": 4}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench model", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="mvitv2_tiny only (unless --models), 1 warm-up and 2 timed steps per configuration")
    parser.add_argument("--models", nargs="+", default=None, help="only these models (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--png", type=Path, default=None, help="chart the speed and memory ratios here")
    add_child_options(parser)
    args = parser.parse_args(argv)
    if serve_child(args, train_steps):
        return 0

    device = pick_device(args.device)
    warmup, steps = (1, 2) if args.quick else (1, 4)
    models = args.models or (["mvitv2_tiny"] if args.quick else [w["model"] for w in workloads(device)])
    rows = []
    for workload in workloads(device):
        if workload["model"] not in models:
            continue
        gmacs = describe_model(workload["model"], num_frames=workload["frames"], crop_size=workload["size"])["gmacs"]
        for attention, checkpointing in VARIANTS:
            spec = dict(workload, attention=attention, checkpointing=checkpointing, device=device,
                        warmup=warmup, steps=steps)
            result = run_child("dalitrain.benchmarks.bench_model", spec, f"bench model: {spec['model']} "
                               f"{spec['attention']} checkpointing={spec['checkpointing']}")
            result["gmacs_per_clip"] = gmacs
            if device == "cuda":  # forward + backward ~ 3x the forward's multiply-adds, 2 FLOPs each
                result["tflops"] = 3 * 2 * gmacs * 1e9 * result["clips_per_s"] / 1e12
            rows.append(dict(spec, **result))
    add_ratios(rows)
    print_table(rows, device)
    if args.png is not None:
        labels = [f"{r['model']} {r['attention']}{' + ckpt' if r['checkpointing'] else ''}" for r in rows]
        save(bar_chart(labels, {"speed (x baseline)": [r["speed_ratio"] for r in rows],
                                "memory (x baseline)": [r["memory_ratio"] for r in rows]},
                       title=f"training step against explicit attention without checkpointing ({device})",
                       ylabel="ratio to the baseline of the same model", lines={"baseline": 1.0}), args.png)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "model", "device": device, "results": rows,
                                         "note": "ratios vs explicit attention without checkpointing, same run"},
                                        indent=2) + "\n")
    return 0


def train_steps(spec: dict) -> dict:
    """Runs in the child: build, warm up, time `steps` training steps; report clips/s (from the fastest step)
    and peak memory."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    backbone = create_backbone(spec["model"], num_frames=spec["frames"], crop_size=spec["size"],
                               attention_impl=spec["attention"], activation_checkpointing=spec["checkpointing"])
    result = time_training_steps(backbone, device=device, batch=spec["batch"], warmup=spec["warmup"],
                                 steps=spec["steps"], optimizer=lambda params: torch.optim.AdamW(params, lr=1e-4))
    result["clips_per_s"] = spec["batch"] / result["step_s"]
    if device.type == "cpu":
        result["peak_rss_step_mb"] = result.pop("step_mem_mb")
    return result


def add_ratios(rows: list[dict]) -> None:
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"]
                    and (r["attention"], r["checkpointing"]) == BASELINE)
        # On the CPU the step's own growth of RSS: the imported libraries and the weights are the same for all.
        memory = "peak_rss_step_mb" if "peak_rss_step_mb" in row else "peak_mem_mb"
        row["speed_ratio"] = row["clips_per_s"] / base["clips_per_s"]
        row["memory_ratio"] = row[memory] / base[memory]


def print_table(rows: list[dict], device: str) -> None:
    memory = "peak MB (step MB)" if device == "cpu" else "peak MB"
    print(f"{'model':15} {'input':>12} {'attention':>9} {'ckpt':>5} {'clips/s':>8} {'x speed':>8} "
          f"{memory:>18} {'x mem':>6}" + (f" {'TFLOP/s':>8}" if device == "cuda" else ""))
    for r in rows:
        size = f"{r['batch']}x{r['frames']}x{r['size']}"
        mem = f"{r['peak_mem_mb']:.0f}" + (f" ({r['peak_rss_step_mb']:.0f})" if "peak_rss_step_mb" in r else "")
        print(f"{r['model']:15} {size:>12} {r['attention']:>9} {'yes' if r['checkpointing'] else 'no':>5} "
              f"{r['clips_per_s']:8.2f} {r['speed_ratio']:8.2f} {mem:>18} {r['memory_ratio']:6.2f}"
              + (f" {r['tflops']:8.1f}" if "tflops" in r else ""))
    print(f"device: {device}; ratios vs explicit attention without checkpointing, measured in this run "
          f"({'x mem compares step MB; ' if device == 'cpu' else ''}shared machines make absolute numbers noisy)")


if __name__ == "__main__":
    sys.exit(main())
