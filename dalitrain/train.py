"""`dalitrain train CONFIG [KEY=VALUE ...]`, and the same on many processes:

    torchrun --nproc_per_node=N -m dalitrain.train CONFIG [KEY=VALUE ...]

Builds the model from `model`, the DALI loaders from `data`/`eval`, and runs the engine's Trainer. A run
resumes by itself from the newest loadable checkpoint in `train.output_dir/checkpoints`.

A config with `stages:` is a curriculum (SFA-ViViT's): the stages run in order, each in `train.output_dir/NAME`,
each starting from the previous stage's best checkpoint (`model.init_from`). A finished stage leaves
`stage.json` (its result) and is not run again, so the same command resumes a killed curriculum in the stage it
was in, from that stage's last checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch

from dalitrain.config import DataConfig, ExperimentConfig, expand_stages, load_config, resolve_path
from dalitrain.data.manifest import read_manifest
from dalitrain.engine.distributed import DistContext, init_distributed, shutdown_distributed
from dalitrain.engine.checkpoint import load_checkpoint
from dalitrain.engine.evaluate import DatasetAccuracy, evaluate
from dalitrain.engine.localisation import LocalisationTarget, localisation_target
from dalitrain.engine.preemption import PREEMPTED_EXIT_CODE, Preempted
from dalitrain.engine.numerics import warm_up_mkl_vml
from dalitrain.engine.state import seed_everything
from dalitrain.engine.trainer import Trainer, TrainingStopped, TrainResult
from dalitrain.errors import DalitrainError, InputError
from dalitrain.fileio import write_atomic
from dalitrain.methods import box_dataset, model_parts
from dalitrain.models import MultiDatasetModel, build_model, init_from_checkpoint
from dalitrain.pipelines.loader import eval_loader, train_loader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=3e-4 train.epochs=5")


def expected_validation_videos(data: DataConfig, localisation: Optional[LocalisationTarget] = None) -> list[int]:
    """Videos in each dataset's validation manifest (0 without one), and for a localisation dataset its annotated
    keyframes less the excluded ones: what evaluation should cover."""
    expected = [len(read_manifest(resolve_path(data.base_dir, d.val_manifest), d.num_classes))
                if d.val_manifest and d.task == "classification" else 0 for d in data.datasets]
    if localisation is not None:
        expected[localisation.dataset] = sum(key not in localisation.excluded for key in localisation.groundtruth)
    return expected


def experiment_model(cfg: ExperimentConfig) -> MultiDatasetModel:
    """The model an experiment trains: its backbone and heads, and what its method and datasets add."""
    parts = model_parts(cfg)
    return build_model(cfg.model, num_classes=[d.num_classes for d in cfg.data.datasets],
                       num_frames=cfg.data.num_frames, crop_size=cfg.data.crop_size,
                       expander=parts.expander, projection=parts.projection, box_dataset=box_dataset(cfg))


def train(cfg: ExperimentConfig, ctx: Optional[DistContext] = None) -> TrainResult:
    ctx = ctx or init_distributed(cfg.data.device)
    loader_device = "gpu" if ctx.device.type == "cuda" else "cpu"
    device_id = ctx.device.index or 0  # the DALI graph runs on this rank's GPU
    warm_up_mkl_vml()  # before the weights' initialisation runs VML ops in parallel: see numerics.py
    seed_everything(cfg.train.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = experiment_model(cfg)
    if cfg.model.init_from:
        report = init_from_checkpoint(model, cfg.model)
        if ctx.is_main:
            print(f"model.init_from {cfg.model.init_from}: {len(report.loaded)} tensors loaded"
                  + "".join(f"; {what}: {_names(keys)}" for what, keys in
                            (("resized", report.resized), ("kept at initialisation", report.skipped),
                             ("not in this model", report.dropped)) if keys), flush=True)

    def make_train_loader(epoch: int, start_step: int):
        return train_loader(cfg.data, shard_id=ctx.rank, num_shards=ctx.world_size, seed=cfg.train.seed,
                            epoch=epoch, start_step=start_step, device=loader_device, device_id=device_id)

    def make_eval_loader():
        return eval_loader(cfg.data, cfg.eval, shard_id=ctx.rank, num_shards=ctx.world_size, device=loader_device,
                           device_id=device_id)

    has_validation = any(d.val_manifest for d in cfg.data.datasets)
    localisation = localisation_target(cfg.data, cfg.train.output_dir)
    trainer = Trainer(cfg, ctx, model, train_loader=make_train_loader,
                      eval_loader=make_eval_loader if has_validation else None,
                      expected_videos=expected_validation_videos(cfg.data, localisation), localisation=localisation)
    return trainer.fit()


def evaluate_checkpoint(cfg: ExperimentConfig, checkpoint: Path, output_dir: Path) -> list[DatasetAccuracy]:
    """The experiment's evaluation of a checkpoint's weights, in this process on the CPU; a localisation dataset's
    detections CSV goes to `output_dir`."""
    model = experiment_model(cfg)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    localisation = localisation_target(cfg.data, output_dir)
    loader = eval_loader(cfg.data, cfg.eval, device="cpu")
    try:
        return evaluate(model, loader, dataset_names=[d.name for d in cfg.data.datasets],
                        num_classes=[d.num_classes for d in cfg.data.datasets],
                        expected=expected_validation_videos(cfg.data, localisation), device=torch.device("cpu"),
                        autocast=nullcontext, localisation=localisation)
    finally:
        loader.close()


def _names(keys: list[str], shown: int = 6) -> str:
    """Tensor names for a log line: all of a few, or the count and the modules they sit in."""
    if len(keys) <= shown:
        return ", ".join(keys)
    modules = dict.fromkeys(".".join(k.split(".")[:2]) for k in keys)
    return f"{len(keys)} tensors in {', '.join(modules)}"


STAGE_RECORD = "stage.json"


def train_stages(cfg: ExperimentConfig, ctx: Optional[DistContext] = None) -> TrainResult:
    """`train(cfg)`, or each stage of a curriculum in turn (module docstring); the last stage's result."""
    stages = expand_stages(cfg)
    if not cfg.stages:
        return train(cfg, ctx)
    ctx = ctx or init_distributed(cfg.data.device)
    previous: Optional[Path] = None
    # a curriculum's train.time_budget_minutes is a deadline for all of it: a stage gets what its predecessors
    # left (or its own budget, when a stage sets a smaller one)
    total, spent = cfg.train.time_budget_minutes, 0.0
    for name, stage in stages:
        if previous is not None and stage.model.init_from is None:
            stage.model.init_from = str(previous)
        record = Path(stage.train.output_dir) / STAGE_RECORD
        if record.is_file():
            result, minutes = _read_record(record)
            spent += minutes
            if ctx.is_main:
                print(f"stage {name}: finished before ({record}); next from {result.checkpoint}", flush=True)
        else:
            if ctx.is_main:
                print(f"stage {name}: {stage.data.num_frames} frames, {stage.train.epochs} epochs"
                      + (f", from {stage.model.init_from}" if stage.model.init_from else ""), flush=True)
            if total is not None:
                stage.train.time_budget_minutes = min(stage.train.time_budget_minutes or total, total - spent)
            started = time.monotonic()
            result = train(stage, ctx)
            if result.checkpoint is None:
                raise TrainingStopped(f"stage {name} wrote no checkpoint, so the next stage has nothing to start from")
            best = result.checkpoint.parent / "best.pt"
            result.checkpoint = best if best.is_file() else result.checkpoint
            minutes = (time.monotonic() - started) / 60.0
            spent += minutes
            if ctx.is_main:
                write_atomic(record, json.dumps({"stage": name, "minutes": minutes, **dataclasses.asdict(result)},
                                                indent=2, default=str))
        previous = result.checkpoint
    return result


def _read_record(path: Path) -> tuple[TrainResult, float]:
    """A finished stage's result and the minutes it took."""
    try:
        record = json.loads(path.read_text())
        evaluation = record["evaluation"]
        return TrainResult(checkpoint=Path(record["checkpoint"]),
                           evaluation=[DatasetAccuracy(**r) for r in evaluation] if evaluation else None,
                           clips_per_s=record["clips_per_s"], global_step=record["global_step"],
                           stopped_by_budget=record["stopped_by_budget"]), float(record["minutes"])
    except (ValueError, KeyError, TypeError) as err:  # not JSON, or not a record's fields
        raise InputError(f"{path}: not a finished stage's record ({type(err).__name__}: {err}); delete it to run "
                         "the stage again") from None


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    try:
        train_stages(cfg)
    except TrainingStopped as err:
        print(f"dalitrain train: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"dalitrain train: {err}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    finally:
        shutdown_distributed()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dalitrain.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DalitrainError as err:  # ConfigError, ManifestError, CheckpointError, ...: one line (dalitrain.errors)
        print(f"dalitrain train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
