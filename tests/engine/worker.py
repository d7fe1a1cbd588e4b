"""Runs a fake training (see fakes.py) as a script: one process, or each rank of a torchrun job.

usage: worker.py OUTPUT_DIR [--kill-at EPOCH STEP [--kill-rank R]] [--signal-at EPOCH STEP RANK] [--batch-size N]
                 [--epochs N] [--no-randomness] [--method M] [--loss KEY=VALUE ...]
--no-randomness turns off Mixup and dropout: their draws depend on how the batch is split across ranks.
Writes OUTPUT_DIR/params-rank{R}.pt with the final parameters.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeLoader, FakeModel, fake_config  # noqa: E402

from dalitrain.config import TrainConfig  # noqa: E402
from dalitrain.engine.distributed import init_distributed, shutdown_distributed  # noqa: E402
from dalitrain.engine.preemption import PREEMPTED_EXIT_CODE, Preempted  # noqa: E402
from dalitrain.engine.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--kill-at", type=int, nargs=2, default=None)
    parser.add_argument("--signal-at", type=int, nargs=3, default=None, help="EPOCH STEP RANK: SIGTERM there")
    parser.add_argument("--kill-rank", type=int, default=None,
                        help="--kill-at kills only this rank, and only in torchrun's first attempt")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-randomness", action="store_true")
    parser.add_argument("--method", default="multitrain")
    parser.add_argument("--loss", nargs="*", default=[], help="loss.KEY=VALUE settings (string values)")
    args = parser.parse_args()
    ctx = init_distributed("cpu")
    cfg = fake_config(args.output_dir, train=TrainConfig(epochs=args.epochs, output_dir=args.output_dir,
                                                         log_every=1, bf16=False))
    if args.no_randomness:
        cfg.loss.mixup_alpha = 0.0
    cfg.method = args.method
    for setting in args.loss:
        key, value = setting.split("=")
        setattr(cfg.loss, key, value)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = FakeModel(dropout=0.0 if args.no_randomness else 0.1, multitrain_parts=args.method == "multitrain")
    kill_at = tuple(args.kill_at) if args.kill_at else None
    if args.kill_rank is not None and (ctx.rank != args.kill_rank or
                                       os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"):
        kill_at = None
    signal_at = tuple(args.signal_at) if args.signal_at else None

    def train_loader(epoch, start_step):
        return FakeLoader(epoch=epoch, start_step=start_step, shard_id=ctx.rank, num_shards=ctx.world_size,
                          batch_size=args.batch_size, kill_at=kill_at, signal_at=signal_at)

    try:
        Trainer(cfg, ctx, model, train_loader=train_loader).fit()
    except Preempted:  # as `dalitrain train` does
        shutdown_distributed()
        sys.exit(PREEMPTED_EXIT_CODE)
    torch.save(model.state_dict(), Path(args.output_dir) / f"params-rank{ctx.rank}.pt")
    shutdown_distributed()


if __name__ == "__main__":
    main()
