"""`dalitrain demo [--recipe multitrain|cofinetune|sfa|ava] [--minutes N] [--out DIR]`: a recipe end to end on the
CPU within a time budget.

1. generates the recipe's synthetic corpus in DIR/corpus-PRESET unless it is already complete (generation
   resumes): the `demo` preset for MultiTrain, `demo_unequal` (very unequal dataset sizes) for co-finetuning,
   `ava_demo` (action localisation in AVA's formats) for `ava` (`--preset` picks another, e.g. `tiny` in the tests);
2. trains the recipe's config (`RECIPES`; DALI CPU pipeline) in DIR/run-RECIPE, stopping at the budget;
3. evaluates every dataset (multi-view); MultiTrain's learned projections are also scored against the planted
   relations (heatmap DIR/relations.png);
4. prints a summary table and writes DIR/summary.json (its `recipe` key names the recipe): the last evaluation,
   and the epoch and top-1 of the best checkpoint (best.pt, chosen on the same validation sets); a curriculum
   (SFA) also lists each stage's minutes and steps. `ava` evaluates the best checkpoint again with the
   ground-truth boxes and with the person proposals, and reports both frame-mAPs, the mAP of random scores, the
   head / mid / tail split and the files the official AVA evaluation reads.

The budget covers everything: the training share is what is left after the corpus, minus a reserve for the
evaluation and the report; a curriculum's stages share it as `share_budget_among_stages` says. A second run with
the same DIR resumes the training from its last checkpoint (and skips finished stages).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from importlib import resources
from pathlib import Path

from dalitrain.config import ExperimentConfig, expand_stages, load_config
from dalitrain.data.synth import PRESETS, generate_corpus
from dalitrain.data.synth_ava import PRESETS as AVA_PRESETS, generate_ava
from dalitrain.engine.checkpoint import load_checkpoint
from dalitrain.engine.localisation import official_files
from dalitrain.engine.relations import load_relations, precision_at_k, random_ranking_precision, read_planted
from dalitrain.errors import InputError
from dalitrain.fileio import write_atomic
from dalitrain.figures import relations_figure, save
from dalitrain.methods import box_dataset
from dalitrain.train import STAGE_RECORD, evaluate_checkpoint, train_stages

TRAIN_SHARE = 0.8  # of the time left after the corpus; the rest is for evaluation and the report
TOP_K = 5
RECIPES = {  # recipe -> (config shipped in dalitrain.configs, synthetic corpus preset)
    "multitrain": ("demo_cpu.yaml", "demo"),
    "cofinetune": ("demo_cofinetune_cpu.yaml", "demo_unequal"),
    "sfa": ("demo_sfa_cpu.yaml", "demo_unequal"),
    "ava": ("demo_ava_cpu.yaml", "ava_demo"),
}


def _corpus_complete(corpus: Path, preset: str) -> bool:
    info = corpus / "corpus.json"
    return info.is_file() and json.loads(info.read_text()).get("complete", False) \
        and (preset in AVA_PRESETS or (corpus / "relations.json").is_file())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=list(RECIPES), default="multitrain",
                        help="multitrain (default; mvitv2_tiny, mixed batches), cofinetune (vivit_fe_tiny, one "
                             "dataset per batch; configs/demo_cofinetune_cpu.yaml), sfa (cofinetune's setup as "
                             "SFA's two stages; configs/demo_sfa_cpu.yaml) or ava (action localisation on a "
                             "synthetic AVA; configs/demo_ava_cpu.yaml)")
    parser.add_argument("--preset", choices=[*PRESETS, *AVA_PRESETS], default=None,
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
    if "frame_map" in summary:
        split = summary["frame_map_split"]
        lines.append(f"frame-mAP@0.5 of the best checkpoint: {100 * summary['frame_map_gt_boxes']:.1f}% with the "
                     f"ground-truth boxes, {100 * summary['frame_map']:.1f}% with the proposals (random scores: "
                     f"{100 * summary['chance_map']:.1f}%); ground-truth boxes by class frequency: "
                     + ", ".join(f"{group} {100 * v:.1f}%" if v is not None else f"{group} -"
                                 for group, v in split.items()))
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
    if (preset in AVA_PRESETS) != (args.recipe == "ava"):
        raise InputError(f"--preset {preset}: the {args.recipe} recipe takes "
                         f"{'an AVA preset' if args.recipe == 'ava' else 'a classification preset'}")
    if not _corpus_complete(corpus, preset):
        print(f"generating the synthetic corpus ({preset}) in {corpus}", flush=True)
        (generate_ava if preset in AVA_PRESETS else generate_corpus)(corpus, preset=preset, seed=0)
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
    if args.recipe == "ava":
        summary.update(localisation_report(cfg, Path(summary["checkpoint"]), out))
    summary["wall_minutes"] = (time.monotonic() - started) / 60.0
    path = write_atomic(out / "summary.json", json.dumps(summary, indent=2))  # the last recipe run in `out`
    print(summary_table(summary))
    print(f"summary: {path}")
    return 0


LAST_STAGE_SHARE = 0.25  # of a curriculum's training budget, kept for its last stage at least


def share_budget_among_stages(cfg: ExperimentConfig) -> None:
    """A curriculum's `train.time_budget_minutes` is a deadline for all its stages (`train_stages`): each stage but
    the last is capped at its share, by epochs, of all but LAST_STAGE_SHARE of it, and the last stage gets what is
    left. An earlier stage that finishes its epochs sooner leaves the time to the last; one on a slow machine is
    cut where the last stage still has its share. (Shares by epochs alone cut SFA's stage 1 short of the epoch in
    which its features leave the collapse every from-scratch demo model goes through: README, SFA-ViViT.)"""
    budget = cfg.train.time_budget_minutes
    if not cfg.stages or budget is None:
        return
    epochs = [stage.train.epochs for _, stage in expand_stages(cfg)][:-1]
    for stage, stage_epochs in zip(cfg.stages, epochs):
        share = (1 - LAST_STAGE_SHARE) * stage_epochs / sum(epochs)
        stage.setdefault("train", {})["time_budget_minutes"] = budget * share


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


def localisation_report(cfg: ExperimentConfig, checkpoint: Path, out: Path) -> dict:
    """The checkpoint's frame-mAP with the ground-truth boxes and with the person proposals, and the files to run
    the official AVA evaluation on (`detections_csv`: the ground-truth boxes' run)."""
    k = box_dataset(cfg)
    runs = {}
    for boxes in ("groundtruth", "proposals"):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.data.datasets[k].eval_boxes = boxes
        runs[boxes] = evaluate_checkpoint(run_cfg, checkpoint, out / f"eval-{boxes}")[k]
    truth, found = runs["groundtruth"], runs["proposals"]
    return {"frame_map": found.frame_map, "frame_map_gt_boxes": truth.frame_map, "chance_map": truth.chance_map,
            "chance_map_proposals": found.chance_map, "frame_map_split": truth.frame_map_split,
            "frame_map_split_proposals": found.frame_map_split, "detections_csv": truth.detections_csv,
            "detections_csv_proposals": found.detections_csv, **official_files(cfg.data, cfg.data.datasets[k])}


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
