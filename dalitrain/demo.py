"""`dalitrain demo [--recipe multitrain|cofinetune|sfa] [--minutes N] [--out DIR]`: a recipe end to end on the
CPU within a time budget.

1. generates the recipe's synthetic corpus in DIR/corpus-PRESET unless it is already complete (generation
   resumes): the `demo` preset for MultiTrain, `demo_unequal` (very unequal dataset sizes) for co-finetuning
   (`--preset` picks another, e.g. `tiny` in the tests);
2. trains the recipe's config (`RECIPES`; DALI CPU pipeline) in DIR/run-RECIPE, stopping at the budget;
3. evaluates every dataset (multi-view); MultiTrain's learned projections are also scored against the planted
   relations (heatmap DIR/relations.png);
4. prints a summary table and writes DIR/summary.json (its `recipe` key names the recipe): the last evaluation,
   and the epoch and top-1 of the best checkpoint (best.pt, chosen on the same validation sets); a curriculum
   (SFA) also lists each stage's minutes and steps.

The budget covers everything: the training share is what is left after the corpus, minus a reserve for the
evaluation and the report; a curriculum shares it among its stages by their epochs. A second run with the same
DIR resumes the training from its last checkpoint (and skips finished stages).
"""
from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

from dalitrain.config import ExperimentConfig, expand_stages, load_config
from dalitrain.data.synth import PRESETS, generate_corpus
from dalitrain.engine.checkpoint import load_checkpoint
from dalitrain.engine.relations import load_relations, precision_at_k, random_ranking_precision, read_planted
from dalitrain.errors import InputError
from dalitrain.fileio import write_atomic
from dalitrain.figures import relations_figure, save
from dalitrain.train import STAGE_RECORD, train_stages

TRAIN_SHARE = 0.8  # of the time left after the corpus; the rest is for evaluation and the report
TOP_K = 5
RECIPES = {  # recipe -> (config shipped in dalitrain.configs, synthetic corpus preset)
    "multitrain": ("demo_cpu.yaml", "demo"),
    "cofinetune": ("demo_cofinetune_cpu.yaml", "demo_unequal"),
    "sfa": ("demo_sfa_cpu.yaml", "demo_unequal"),
}


def _corpus_complete(corpus: Path) -> bool:
    info = corpus / "corpus.json"
    return info.is_file() and json.loads(info.read_text()).get("complete", False) \
        and (corpus / "relations.json").is_file()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=list(RECIPES), default="multitrain",
                        help="multitrain (default; mvitv2_tiny, mixed batches), cofinetune (vivit_fe_tiny, one "
                             "dataset per batch; configs/demo_cofinetune_cpu.yaml) or sfa (cofinetune's setup as "
                             "SFA's two stages; configs/demo_sfa_cpu.yaml)")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="synthetic corpus preset (default: the recipe's)")
    parser.add_argument("--minutes", type=float, default=16.0, help="total time budget (default 16)")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (train.seed: initialisation, sampling, augmentation); the corpus is "
                             "always generated with seed 0")
    parser.add_argument("--out", default=None, help="output directory (default runs/demo for multitrain, "
                                                       "runs/demo-RECIPE for the others)")


def summary_table(summary: dict) -> str:
    best = summary.get("best")
    best_head = f" {'best@' + str(best['epoch']):>8}" if best else ""
    lines = [f"{'dataset':<20} {'top-1':>7} {'top-5':>7} {'chance':>7}{best_head}"]
    for name, r in summary["datasets"].items():
        best_top1 = f" {best['top1'][name]:>7.1f}%" if best else ""
        lines.append(f"{name:<20} {r['top1']:>6.1f}% {r['top5']:>6.1f}% {r['chance']:>6.1f}%{best_top1}")
    if "relations_precision_at_5" in summary:
        lines.append(f"relations precision@{TOP_K}: {summary['relations_precision_at_5']:.1f}% "
                     f"(untrained projection: {summary['random_relations_precision_at_5']:.1f}%; a random ranking: "
                     f"{summary['random_ranking_precision']:.1f}% expected)")
    for stage in summary.get("stages", []):
        lines.append(f"stage {stage['stage']}: {stage['minutes']:.1f} min, {stage['steps']} steps")
    lines.append(f"training throughput: {summary['clips_per_s']:.2f} clips/s; wall time "
                 f"{summary['wall_minutes']:.1f} min")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    config_name, preset = RECIPES[args.recipe]
    preset = args.preset or preset
    out = Path(args.out or ("runs/demo" if args.recipe == "multitrain" else f"runs/demo-{args.recipe}"))
    corpus = out / f"corpus-{preset}"
    run_dir = out / f"run-{args.recipe}"  # a second recipe in the same --out must not resume the first one's run
    if not _corpus_complete(corpus):
        print(f"generating the synthetic corpus ({preset}) in {corpus}", flush=True)
        generate_corpus(corpus, preset=preset, seed=0)
    left_minutes = args.minutes - (time.monotonic() - started) / 60.0
    if left_minutes <= 0:
        raise InputError(f"generating the corpus used the whole budget of {args.minutes} minutes; it is kept in "
                         f"{corpus}: run the demo again, or give more --minutes")
    with resources.as_file(resources.files("dalitrain.configs") / config_name) as config_path:
        cfg = load_config(config_path, [f"data.base_dir={corpus.resolve()}",
                                        f"train.output_dir={run_dir.resolve()}",
                                        f"train.time_budget_minutes={TRAIN_SHARE * left_minutes:.3f}",
                                        f"train.seed={args.seed}"])
    share_budget_among_stages(cfg)
    result = train_stages(cfg)
    if result.checkpoint is None or result.evaluation is None:
        raise InputError(f"{run_dir}: the run produced no checkpoint or evaluation")

    best = result.checkpoint.parent / "best.pt"
    summary = {
        "recipe": args.recipe,
        "config": config_name,
        "model": cfg.model.arch,
        "seed": args.seed,
        "corpus": str(corpus),
        "datasets": {r.name: {"top1": r.top1, "top5": r.top5, "chance": r.chance_top1,
                              "chance_top5": r.chance_top5, "videos": r.videos, "expected": r.expected}
                     for r in result.evaluation},
        "clips_per_s": result.clips_per_s,
        "checkpoint": str(best if best.is_file() else result.checkpoint),
        # top-1 of the checkpoint named above when it is best.pt: chosen on these same validation sets
        "best": _best_evaluation(best) if best.is_file() else None,
        "steps": result.global_step,
        "stopped_by_budget": result.stopped_by_budget,
    }
    if cfg.stages:
        summary["stages"] = [_stage_summary(Path(stage.train.output_dir) / STAGE_RECORD)
                             for _, stage in expand_stages(cfg)]
    if cfg.method == "multitrain" and cfg.loss.projection != "none":
        summary.update(_relations_report(result.checkpoint, corpus, out / "relations.png"))
    summary["wall_minutes"] = (time.monotonic() - started) / 60.0
    path = write_atomic(out / "summary.json", json.dumps(summary, indent=2))  # the last recipe run in `out`
    print(summary_table(summary))
    print(f"summary: {path}")
    return 0


def share_budget_among_stages(cfg: ExperimentConfig) -> None:
    """A curriculum's stages split `train.time_budget_minutes` in proportion to their epochs."""
    budget = cfg.train.time_budget_minutes
    if not cfg.stages or budget is None:
        return
    epochs = [stage.train.epochs for _, stage in expand_stages(cfg)]
    for stage, stage_epochs in zip(cfg.stages, epochs):
        stage.setdefault("train", {})["time_budget_minutes"] = budget * stage_epochs / sum(epochs)


def _stage_summary(record: Path) -> dict:
    stage = json.loads(record.read_text())
    return {"stage": stage["stage"], "minutes": stage["minutes"], "steps": stage["global_step"],
            "checkpoint": stage["checkpoint"], "stopped_by_budget": stage["stopped_by_budget"]}


def _best_evaluation(best: Path) -> dict:
    """Epoch and per-dataset top-1 of the best checkpoint (the highest mean top-1 over the evaluations)."""
    state = load_checkpoint(best)
    # a checkpoint names the epoch it resumes at: the next one, unless the budget stopped this one part way
    epoch = state["epoch"] + (1 if state["step_in_epoch"] else 0)
    return {"epoch": epoch, "top1": {r["name"]: r["top1"] for r in state["evaluation"]}}


def _relations_report(checkpoint: Path, corpus: Path, png: Path) -> dict:
    """The learned projections against the relations planted in the corpus, and their heatmap."""
    learned = load_relations(checkpoint)
    planted = read_planted(corpus / "relations.json", learned.names)
    save(relations_figure(learned.trained, learned.names, learned.class_names,
                          title="Projections learned by the demo (planted relations: the corpus's relations.json)"), png)
    return {
        "relations_precision_at_5": precision_at_k(learned.trained, planted, TOP_K),
        "random_relations_precision_at_5": precision_at_k(learned.initial, planted, TOP_K),
        "random_ranking_precision": random_ranking_precision(planted),
        "relations_png": str(png),
    }
