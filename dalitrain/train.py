"""`dalitrain train CONFIG [KEY=VALUE ...]`, and the same on many processes:

    torchrun --nproc_per_node=N -m dalitrain.train CONFIG [KEY=VALUE ...]

Builds the model from `model`, the DALI loaders from `data`/`eval`, and runs the engine's Trainer. A run
resumes by itself from the newest loadable checkpoint in `train.output_dir/checkpoints`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from dalitrain.config import DataConfig, ExperimentConfig, load_config, resolve_path
from dalitrain.data.manifest import read_manifest
from dalitrain.engine.distributed import DistContext, init_distributed, shutdown_distributed
from dalitrain.engine.state import seed_everything
from dalitrain.engine.preemption import PREEMPTED_EXIT_CODE, Preempted
from dalitrain.engine.trainer import Trainer, TrainingStopped, TrainResult
from dalitrain.methods import model_parts
from dalitrain.models import build_model
from dalitrain.pipelines.loader import eval_loader, train_loader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=3e-4 train.epochs=5")


def expected_validation_videos(data: DataConfig) -> list[int]:
    """Videos in each dataset's validation manifest (0 without one): what evaluation should cover."""
    return [len(read_manifest(resolve_path(data.base_dir, d.val_manifest), d.num_classes)) if d.val_manifest else 0
            for d in data.datasets]


def train(cfg: ExperimentConfig, ctx: Optional[DistContext] = None) -> TrainResult:
    ctx = ctx or init_distributed(cfg.data.device)
    loader_device = "gpu" if ctx.device.type == "cuda" else "cpu"
    device_id = ctx.device.index or 0  # the DALI graph runs on this rank's GPU
    seed_everything(cfg.train.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    parts = model_parts(cfg)
    model = build_model(cfg.model, num_classes=[d.num_classes for d in cfg.data.datasets],
                        num_frames=cfg.data.num_frames, crop_size=cfg.data.crop_size,
                        expander=parts.expander, projection=parts.projection)

    def make_train_loader(epoch: int, start_step: int):
        return train_loader(cfg.data, shard_id=ctx.rank, num_shards=ctx.world_size, seed=cfg.train.seed,
                            epoch=epoch, start_step=start_step, device=loader_device, device_id=device_id)

    def make_eval_loader():
        return eval_loader(cfg.data, cfg.eval, shard_id=ctx.rank, num_shards=ctx.world_size, device=loader_device,
                           device_id=device_id)

    has_validation = any(d.val_manifest for d in cfg.data.datasets)
    trainer = Trainer(cfg, ctx, model, train_loader=make_train_loader,
                      eval_loader=make_eval_loader if has_validation else None,
                      expected_videos=expected_validation_videos(cfg.data))
    return trainer.fit()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    try:
        train(cfg)
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
    except (FileNotFoundError, ValueError) as err:  # ConfigError, ManifestError, CheckpointError: one line
        print(f"dalitrain train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
