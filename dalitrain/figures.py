"""Figures with matplotlib (non-interactive Agg backend: no display needed), each readable without the code:
axes named, units given, class names on heatmaps, a colour bar.

- `relations_figure`: every learned cross-dataset projection W [C_dst, C_src], one heatmap per ordered pair
  (row: destination dataset, column: source dataset), class names on both axes;
- `training_figure`: a run's `metrics.jsonl` (loss terms, learning rate, clips/s and data wait, per-dataset top-1
  at each evaluation); `dalitrain plot RUN_DIR [--png F]` draws it;
- `bar_chart`: labelled bars with reference lines (the benchmarks' charts).
Each returns the matplotlib Figure (tests read its axes); `save` writes a PNG through a temporary file, so a reader
never sees half of one.
"""
from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import numpy as np

from dalitrain.errors import InputError
from dalitrain.fileio import write_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

CELL_INCHES = 0.28  # per heatmap row or column: room for one class-name line


def save(figure, path: str | Path) -> Path:
    """The figure as a PNG at `path`, written atomically (`fileio.write_atomic`); the figure is closed."""
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return write_atomic(path, image.getvalue())


def relations_figure(weights: dict[tuple[int, int], np.ndarray], names: list[str], class_names: list[list[str]],
                     title: str = "Learned cross-dataset projections"):
    """weights: (src, dst) -> W [C_dst, C_src]. Each block on its own symmetric scale (blue < 0 < red)."""
    n = len(names)
    widths = [max(len(c), 2) for c in class_names]
    # constrained layout leaves room for every block's class names and colour bar
    figure, axes = plt.subplots(n, n, figsize=(sum(widths) * CELL_INCHES + 3.2 * n, sum(widths) * CELL_INCHES + 2.4 * n),
                                gridspec_kw={"width_ratios": widths, "height_ratios": widths}, squeeze=False,
                                layout="constrained")
    for dst in range(n):
        for src in range(n):
            ax = axes[dst][src]
            if (src, dst) not in weights:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{names[dst]}\n(no self-projection)", ha="center", va="center", fontsize=8)
                continue
            w = weights[(src, dst)]
            limit = max(float(np.abs(w).max()), 1e-12)
            image = ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            ax.set_xticks(range(w.shape[1]), class_names[src], rotation=90, fontsize=6)
            ax.set_yticks(range(w.shape[0]), class_names[dst], fontsize=6)
            ax.set_title(f"{names[src]} -> {names[dst]}", fontsize=8)
            figure.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    figure.suptitle(f"{title}\nrow: destination dataset (its classes on the y axis); column: source dataset (its "
                    "classes on the x axis); colour: weight W[dst class, src class]", fontsize=10)
    return figure


def read_metrics(run_dir: str | Path) -> list[dict]:
    """A run's records: `RUN/metrics.jsonl`, or a curriculum's stages (`RUN/*/metrics.jsonl`, in the order they
    started), each record tagged with its stage."""
    run_dir = Path(run_dir)
    files = [run_dir / "metrics.jsonl"] if (run_dir / "metrics.jsonl").is_file() else sorted(
        run_dir.glob("*/metrics.jsonl"), key=lambda f: (f.parent / "config.yaml").stat().st_mtime
        if (f.parent / "config.yaml").is_file() else f.stat().st_mtime)
    if not files:
        raise InputError(f"{run_dir}: no metrics.jsonl here or in a stage folder below (is it a run's "
                         "train.output_dir?)")
    records, offset = [], 0
    for file in files:
        stage_records = []
        for number, line in enumerate(file.read_text().splitlines(), 1):
            try:
                stage_records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{file}:{number}: not a JSON record") from None
        for record in stage_records:
            record["stage"] = file.parent.name if file.parent != run_dir else ""
            record["run_step"] = offset + record.get("step", 0)
        offset += max((r.get("step", 0) for r in stage_records), default=0)
        records += stage_records
    return records


def training_figure(records: list[dict], title: str):
    """Four panels against the optimizer step: loss terms, learning rate, clips/s with data wait, top-1."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        raise InputError(f"{title}: no training records to plot")
    skip = {"kind", "epoch", "step", "run_step", "stage", "lr", "clips_per_s", "data_wait", "nonfinite_total",
            "elapsed_s", "rss_mb", "gpu_mb", "gpu_peak_mb"}
    steps = [r["run_step"] for r in train]
    figure, ((loss_ax, lr_ax), (speed_ax, top1_ax)) = plt.subplots(2, 2, figsize=(12, 8))
    for term in sorted({k for r in train for k in r if k not in skip and isinstance(r[k], (int, float))}):
        loss_ax.plot(steps, [r.get(term, math.nan) for r in train], label=term)
    loss_ax.set(title="loss terms (mean since the previous log line)", xlabel="step", ylabel="value")
    loss_ax.legend(fontsize="small")
    lr_ax.plot(steps, [r["lr"] for r in train])
    lr_ax.set(title="learning rate", xlabel="step", ylabel="lr")
    speed_ax.plot(steps, [r["clips_per_s"] for r in train], label="clips/s (global)")
    speed_ax.set(title="throughput", xlabel="step", ylabel="clips/s")
    wait_ax = speed_ax.twinx()
    wait_ax.plot(steps, [100.0 * r["data_wait"] for r in train], color="tab:orange", label="data wait (%)")
    wait_ax.set_ylabel("share of step time waiting for data (%)")
    speed_ax.legend(loc="upper left", fontsize="small")
    wait_ax.legend(loc="upper right", fontsize="small")
    names = sorted({k.split("/")[0] for r in evals for k in r if k.endswith("/top1")})
    for name in names:
        top1_ax.plot([r["run_step"] for r in evals], [r.get(f"{name}/top1", math.nan) for r in evals], marker="o",
                     label=name)
    top1_ax.set(title="validation top-1 at each evaluation", xlabel="step", ylabel="top-1 (%)")
    if names:
        top1_ax.legend(fontsize="small")
    stage_starts = [(r["run_step"] - r["step"], r["stage"]) for i, r in enumerate(train)
                    if r["stage"] and (i == 0 or train[i - 1]["stage"] != r["stage"])]
    for ax in (loss_ax, lr_ax, speed_ax, top1_ax):
        for start, stage in stage_starts[1:]:
            ax.axvline(start, color="grey", linestyle=":")
            ax.text(start, 1.0, f" {stage}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="grey")
        ax.grid(True, alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def bar_chart(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str, ylabel: str,
              lines: Optional[dict[str, float]] = None, log: bool = False):
    """Grouped bars: one group per label, one bar per series (its value written on it); `lines`: name -> value
    drawn as dashed reference lines."""
    figure, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) * len(series) + 3.0), 4.8))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar([x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))], values, width,
                      label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    for (name, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="grey", linestyle=style, label=f"{name}: {value:.2f}")
    if log:
        ax.set_yscale("log")
    if lines or len(series) > 1:
        ax.legend(fontsize="small")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run's train.output_dir (a curriculum's: its stages in one figure)")
    parser.add_argument("--png", default=None, help="output file (default RUN_DIR/training.png)")


def run(args: argparse.Namespace) -> int:
    path = save(training_figure(read_metrics(args.run_dir), title=f"training of {args.run_dir}"),
                args.png or Path(args.run_dir) / "training.png")
    print(f"training curves: {path}")
    return 0
