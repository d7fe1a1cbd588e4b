"""`dalitrain bench soak [--minutes N] [--out DIR] [--json FILE]`: host memory over a long run, to find leaks.

Trains the MultiTrain demo recipe (`demo_cpu.yaml`: decode threads, the DALI pipeline, the model) on the `tiny`
synthetic corpus, many short epochs so that loaders and pipelines are rebuilt again and again, for N minutes. Every
progress record carries the process's resident memory (`rss_mb`; CUDA allocated / reserved too on a GPU). The
report: RSS per interval, and the steady-state growth in MB per hour, the least-squares slope of RSS over time after
a warm-up (the first third of the run: allocator pools, pinned buffers and the first pipeline settle there). A
leak shows as a growth well above the noise between intervals.
"""
from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from dalitrain.config import load_config
from dalitrain.data.synth import generate_corpus
from dalitrain.errors import UsageError
from dalitrain.train import train

INTERVALS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time (default 10)")
    parser.add_argument("--out", type=Path, default=Path("runs/soak"), help="corpus and run folder")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    corpus = args.out / "corpus-tiny"
    if not (corpus / "corpus.json").is_file():
        generate_corpus(corpus, preset="tiny", seed=0)
    run_dir = args.out / "run"
    with resources.as_file(resources.files("dalitrain.configs") / "demo_cpu.yaml") as config_path:
        cfg = load_config(config_path, [f"data.base_dir={corpus.resolve()}", f"train.output_dir={run_dir.resolve()}",
                                        f"train.time_budget_minutes={args.minutes}", "train.epochs=100000",
                                        "train.log_every=1", "train.checkpoint_every_epochs=100000",
                                        "eval.every_epochs=100000"])
    if (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()  # one soak per folder: a resumed log would mix two runs
    train(cfg)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = soak_report([r for r in records if r["kind"] == "train" and "rss_mb" in r])
    print(f"{'minute':>7} {'rss MB':>8}")
    for point in result["intervals"]:
        print(f"{point['minute']:>7.1f} {point['rss_mb']:>8.0f}")
    print(f"steady-state growth after the first third: {result['growth_mb_per_hour']:+.1f} MB/hour "
          f"(RSS {result['rss_start_mb']:.0f} -> {result['rss_end_mb']:.0f} MB over {result['minutes']:.1f} min; "
          f"{result['records']} records)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def soak_report(records: list[dict]) -> dict:
    """RSS at INTERVALS evenly spaced records, and the least-squares slope (MB/hour) of RSS over elapsed time
    after the first third of the run."""
    if len(records) < 6:
        raise UsageError(f"{len(records)} progress records: too few to measure a trend (train longer)")
    times = [r["elapsed_s"] for r in records]
    steady = [r for r in records if r["elapsed_s"] >= times[-1] / 3]
    t = [r["elapsed_s"] / 3600 for r in steady]
    m = [r["rss_mb"] for r in steady]
    t_mean, m_mean = sum(t) / len(t), sum(m) / len(m)
    slope = sum((a - t_mean) * (b - m_mean) for a, b in zip(t, m)) / sum((a - t_mean) ** 2 for a in t)
    picks = [records[round(i * (len(records) - 1) / (INTERVALS - 1))] for i in range(INTERVALS)]
    return {"intervals": [{"minute": r["elapsed_s"] / 60, "rss_mb": r["rss_mb"]} for r in picks],
            "growth_mb_per_hour": slope, "rss_start_mb": steady[0]["rss_mb"], "rss_end_mb": steady[-1]["rss_mb"],
            "minutes": times[-1] / 60, "records": len(records)}
