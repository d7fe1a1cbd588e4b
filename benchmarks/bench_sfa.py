"""`dalitrain bench sfa [--quick] [--json F] [--png F]`: what SFA-ViViT's frozen spatial transformer saves.

SFA-ViViT (Gowda, Arnab, Huang) claims, for its stage 2 (spatial transformer frozen, adapter, temporal transformer
and head trained) against full fine-tuning of the ViViT factorised encoder:
  1. step time at the same frames and batch: 0.5x frozen alone, 0.53x with the adapter (its Table 1);
  2. the largest frame count that trains at batch 1 in a fixed memory: 5x (16 -> 80 frames on a 12 GB GPU);
  3. the whole curriculum (stage 1 at 8 frames + stage 2) against full training at the target frames, for equal
     epochs: 0.56-0.63x (Tables 5-6).
This measures the three in one run. Each configuration trains in its own child process (forward, backward and
an SGD step of a linear head on random clips, as `bench model`), so that peak memory is the child's own: on the
CPU the growth of its RSS from before the input batch is made (model and optimizer built) to its peak
(`ru_maxrss`), on CUDA `torch.cuda.max_memory_allocated` (bf16 autocast); the input counts, as it grows with the
clip.

Model: on the CPU a ViViT factorised encoder sized for 2 cores (192 wide, 6 spatial and 2 temporal blocks, 3
heads, tubelet 2x16x16 on 112x112 crops: 49 patches a frame), on CUDA ViViT-B at 224x224. Ratios:
  step_time_ratio        stage 2 (frozen + adapter) / full, at `--frames` (128, the paper's App D) and batch 2;
  frames_full/frames_sfa the largest count on the ladder 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, ... that fits
                         `--budget-mb` at batch 1 (both searched up to `--max-frames`; at the cap, a lower bound);
  curriculum_time_ratio  (full step at 8 frames + stage-2 step at `--frames`) / full step at `--frames`: the
                         curriculum's time for equal epochs in each stage, per step of equal batch.
Goals from the paper: step time <= 0.55, frames >= 5x, curriculum <= 0.65. The budget is the paper's setting
shrunk to this machine: by default the step memory that full training needs at 16 frames, batch 1 (the paper's
12 GB GPU fitted full ViViT at 16 frames), measured in the same run, unless `--budget-mb` fixes it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import torch
from matplotlib.ticker import ScalarFormatter

from dalitrain.benchmarks.children import (add_child_options, pick_device, run_child, serve_child,
                                            time_training_steps)
from dalitrain.figures import plt, save
from dalitrain.models.registry import create_backbone

LADDER = [4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
MODES = {"full": ([], "none"), "frozen": (["spatial"], "none"), "sfa": (["spatial"], "mlp")}
GOALS = {"step_time_ratio": ("<=", 0.55), "frames_ratio": (">=", 5.0), "curriculum_time_ratio": ("<=", 0.65)}


def model_options(device: str) -> dict:
    if device == "cuda":
        return {"name": "vivit_fe_b", "crop_size": 224}
    return {"name": "vivit_fe_b", "crop_size": 112, "embed_dim": 192, "depth": 6, "num_heads": 3, "mlp_dim": 768,
            "temporal_depth": 2}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench sfa", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed step per configuration, frames up to 256")
    parser.add_argument("--frames", type=int, default=128,
                        help="stage 2's clip length for the time ratios (default 128, the paper's App D)")
    parser.add_argument("--budget-mb", type=float, default=None,
                        help="memory budget of the frame search (default: what full training needs at 16 frames)")
    parser.add_argument("--max-frames", type=int, default=1024, help="stop the frame search here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--png", type=Path, default=None, help="plot step memory against frames here")
    add_child_options(parser)
    args = parser.parse_args(argv)
    if serve_child(args, train_steps):
        return 0

    device = pick_device(args.device)
    steps = 1 if args.quick else 3
    max_frames = min(args.max_frames, 256) if args.quick else args.max_frames

    def measure(mode: str, frames: int, batch: int, timed: int = steps) -> dict:
        spec = {"mode": mode, "frames": frames, "batch": batch, "device": device, "warmup": 1, "steps": timed,
                "model": model_options(device)}
        return run_child("dalitrain.benchmarks.bench_sfa", spec, f"bench sfa: {mode} at {frames} frames")

    timing = {mode: measure(mode, args.frames, 2) for mode in MODES}
    stage1 = measure("full", 8, 2)
    budget = args.budget_mb or measure("full", 16, 1, timed=1)["step_mem_mb"]
    curves = {mode: frame_search(lambda f, m=mode: measure(m, f, 1, timed=1), budget, max_frames)
              for mode in ("full", "sfa")}
    summary = summarize(timing, stage1, curves, budget, max_frames)
    print_report(summary, timing, stage1, curves, device, args.frames)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "sfa", "device": device, "model": model_options(device), "frames": args.frames,
            **summary, "goals": GOALS, "timing": timing, "stage1_8_frames": stage1,
            "memory_against_frames": {m: [dict(frames=f, **r) for f, r in rows] for m, rows in curves.items()},
        }, indent=2) + "\n")
    if args.png is not None:
        plot_memory(curves, budget, device, args.png)
    return 0


def summarize(timing: dict, stage1: dict, curves: dict, budget: float, max_frames: int) -> dict:
    """The three ratios (module docstring) from the measurements."""
    frames_full, frames_sfa = (max((f for f, r in curves[m] if r["step_mem_mb"] <= budget), default=0)
                               for m in ("full", "sfa"))
    return {
        "step_time_ratio": timing["sfa"]["step_s"] / timing["full"]["step_s"],
        "frozen_step_time_ratio": timing["frozen"]["step_s"] / timing["full"]["step_s"],
        "frames_full": frames_full, "frames_sfa": frames_sfa,
        "frames_ratio": frames_sfa / frames_full if frames_full else float("inf"),
        "frames_sfa_at_cap": frames_sfa >= max_frames,
        "curriculum_time_ratio": (stage1["step_s"] + timing["sfa"]["step_s"]) / timing["full"]["step_s"],
        "budget_mb": budget,
    }


def frame_search(measure, budget: float, max_frames: int) -> list[tuple[int, dict]]:
    """Up the ladder while the step fits the budget; the first that does not fit ends the search (and is kept,
    as the curve's last point)."""
    rows = []
    for frames in (f for f in LADDER if f <= max_frames):
        result = measure(frames)
        rows.append((frames, result))
        if result["step_mem_mb"] > budget:
            break
    return rows


def train_steps(spec: dict) -> dict:
    """Runs in the child: build the mode's model, warm up, time the steps; the fastest step and the peak memory."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    options = dict(spec["model"])
    freeze, adapter = MODES[spec["mode"]]
    if adapter != "none":
        options["adapter"] = adapter
    backbone = create_backbone(options.pop("name"), num_frames=spec["frames"], **options)
    backbone.freeze(freeze)
    result = time_training_steps(backbone, device=device, batch=spec["batch"], warmup=spec["warmup"],
                                 steps=spec["steps"], optimizer=lambda params: torch.optim.SGD(params, lr=0.1,
                                                                                               momentum=0.9))
    result["trainable_params"] = sum(p.numel() for p in backbone.parameters() if p.requires_grad) + \
        (backbone.embed_dim + 1) * 400  # and the head's
    return result


def verdict(name: str, value: float) -> str:
    sense, goal = GOALS[name]
    met = value <= goal if sense == "<=" else value >= goal
    return f"goal {sense} {goal}: {'met' if met else 'NOT met'}"


def print_report(summary: dict, timing: dict, stage1: dict, curves: dict, device: str, frames: int) -> None:
    print(f"{'setting':34} {'step s':>8} {'x full':>7} {'trainable':>11}")
    for mode, label in (("full", "full fine-tuning"), ("frozen", "frozen spatial"),
                        ("sfa", "frozen spatial + adapter (stage 2)")):
        r = timing[mode]
        print(f"{label:34} {r['step_s']:8.3f} {r['step_s'] / timing['full']['step_s']:7.2f} "
              f"{r['trainable_params'] / 1e6:9.2f} M")
    print(f"{'full at 8 frames (stage 1)':34} {stage1['step_s']:8.3f}  (batch 2, {frames} frames above)")
    print(f"\nstep memory (MB) at batch 1 against frames; budget {summary['budget_mb']:.0f} MB")
    print(f"{'frames':>7} {'full':>9} {'stage 2':>9}")
    by_frames = {f: {m: r["step_mem_mb"] for m, rows in curves.items() for g, r in rows if g == f}
                 for f in sorted({f for rows in curves.values() for f, _ in rows})}
    for f, row in by_frames.items():
        print(f"{f:7d} " + " ".join(f"{row[m]:9.0f}" if m in row else f"{'-':>9}" for m in ("full", "sfa")))
    s = summary
    print(f"\nstep time, stage 2 / full at {frames} frames: {s['step_time_ratio']:.2f} "
          f"({verdict('step_time_ratio', s['step_time_ratio'])}; frozen alone {s['frozen_step_time_ratio']:.2f})")
    bound = " (stage 2 reached the search's cap: a lower bound)" if s["frames_sfa_at_cap"] else ""
    print(f"frames in {s['budget_mb']:.0f} MB at batch 1: full {s['frames_full']}, stage 2 {s['frames_sfa']}: "
          f"{s['frames_ratio']:.1f}x{bound} ({verdict('frames_ratio', s['frames_ratio'])})")
    print(f"curriculum (8 frames + stage 2) / full at {frames} frames: {s['curriculum_time_ratio']:.2f} "
          f"({verdict('curriculum_time_ratio', s['curriculum_time_ratio'])})")
    print(f"device: {device}; every ratio measured in this run")


def plot_memory(curves: dict, budget: float, device: str, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for mode, label in (("full", "full fine-tuning"), ("sfa", "SFA stage 2 (frozen spatial + adapter)")):
        frames = [f for f, _ in curves[mode]]
        axes.plot(frames, [r["step_mem_mb"] for _, r in curves[mode]], marker="o", label=label)
    axes.axhline(budget, color="grey", linestyle="--", label=f"budget {budget:.0f} MB")
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())  # 4, 8, 16 rather than 2^2, 2^3, 2^4
    axes.set_xlabel("frames per clip (batch 1)")
    axes.set_ylabel("training-step memory (MB)" + (" of RSS growth" if device == "cpu" else ""))
    axes.set_title(f"Memory against clip length, {device}")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")  # below: no curve hidden
    axes.grid(True, alpha=0.3)
    return save(figure, path)


if __name__ == "__main__":
    sys.exit(main())
