"""One forward and backward of the real MultiTrain model (mvitv2_tiny; the expander with its global BatchNorm, the
projections, the released objective with the informative loss) on one fixed global batch of 4 clips. Under
torchrun each rank takes its rows and DDP averages the gradients. Saves this rank's loss and gradients.

usage: real_model_worker.py OUTPUT_DIR [--sfa]
--sfa: SFA's stage 2 instead (vivit_fe_tiny, spatial transformer frozen, adapter; co-finetuning's loss)."""
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from dalitrain.config import LossConfig, ModelConfig
from dalitrain.engine.distributed import init_distributed, shutdown_distributed
from dalitrain.engine.trainer import TrainStep
from dalitrain.losses.classification import Targets
from dalitrain.losses.cofinetune import CoFinetuneLoss
from dalitrain.losses.multitrain import MultiTrainLoss
from dalitrain.models import build_model


def main(output_dir: str, sfa: bool) -> None:
    ctx = init_distributed("cpu")
    torch.manual_seed(0)  # the same weights and batch on every rank
    if sfa:
        model = build_model(ModelConfig(arch="vivit_fe_tiny", head="linear", drop_path_rate=0.0, freeze=["spatial"],
                                        adapter="mlp"), num_classes=[3, 5], num_frames=8, crop_size=64)
        criterion = CoFinetuneLoss(num_datasets=2)
    else:
        model = build_model(ModelConfig(arch="mvitv2_tiny", head_hidden_dim=32, expander_hidden_dim=64,
                                        drop_path_rate=0.0), num_classes=[3, 5], num_frames=8, crop_size=64,
                            expander=True, projection=True)
        criterion = MultiTrainLoss(LossConfig(projection="released", informative=True), num_datasets=2)
    step = TrainStep(model, criterion)
    if ctx.distributed:
        step = DistributedDataParallel(step)
    video = torch.randn(4, 3, 8, 64, 64)
    label, dataset = torch.tensor([2, 0, 4, 1]), torch.tensor([0, 1, 1, 0])
    per_rank = 4 // ctx.world_size
    rows = slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
    out = step(video[rows], Targets.plain(label[rows]), dataset[rows])
    out.total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    # the global BatchNorm whose statistics must cover all 4 clips: the expander's, or (frozen) the conv stem's
    norm = model.backbone.spatial.patch_embed.proj[1] if sfa else model.expander.norm
    torch.save({"loss": out.total.detach(), "grads": grads, "running_var": norm.running_var.clone()},
               Path(output_dir) / f"rank{ctx.rank}.pt")
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sfa="--sfa" in sys.argv[2:])
