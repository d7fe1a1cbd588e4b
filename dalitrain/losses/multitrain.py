"""The MultiTrain objective: per-dataset classification (+ projection) losses, uncertainty-weighted, plus the
informative loss. Every term has a switch in `LossConfig`, so the paper's ablation rows are config changes:

    vanilla multi-head CE      informative=false projection=false uncertainty=false
    without informative loss   informative=false
    without projection loss    projection=false
    without projection add     projection_add=false   (Y'_k = sum_{i!=k} W_ik Y_i instead of Y_k + ...)

For dataset k (on its own samples only): L_k = CE(Y_k) + CE(Y'_k), the second term only with the projection;
Y'_k = Y_k + sum_{i!=k} W_ik Y_i. The original heads Y_k are what evaluation scores, so they always get their own
cross-entropy. Datasets are then combined by uncertainty weighting (or summed), and the informative loss is added.

Data parallel: each rank holds part of the global batch. A dataset's loss is the sum over the rank's samples
divided by that dataset's GLOBAL sample count, times the world size; DDP averages gradients over ranks, so the
update is exactly that of one process holding the whole batch. For the same reason every logged term is "rank
share x world size": its mean over ranks is the global value.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.distributed as dist
from torch import nn

from dalitrain.config import LossConfig
from dalitrain.losses.classification import Targets, masked_cross_entropy_sum
from dalitrain.losses.informative import informative_term
from dalitrain.losses.uncertainty import UncertaintyWeighting

Projection = Callable[[list[torch.Tensor]], list[torch.Tensor]]


class LossTerms(NamedTuple):
    total: torch.Tensor  # what this rank back-propagates
    terms: dict[str, torch.Tensor]  # detached scalars; their mean over ranks is the global value


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def global_dataset_counts(dataset: torch.Tensor, num_datasets: int) -> torch.Tensor:
    """[K] float: samples of each dataset in the global batch (summed over ranks)."""
    counts = torch.bincount(dataset, minlength=num_datasets).to(torch.float32)
    if _distributed():
        dist.all_reduce(counts)
    return counts


class MultiTrainLoss(nn.Module):
    def __init__(self, cfg: LossConfig, num_datasets: int):
        super().__init__()
        self.cfg = cfg
        self.num_datasets = num_datasets
        self.uncertainty = UncertaintyWeighting(num_datasets) if cfg.uncertainty else None

    def forward(self, logits: list[torch.Tensor], expanded: torch.Tensor, targets: Targets, dataset: torch.Tensor,
                projection: Optional[Projection] = None) -> LossTerms:
        """logits: one [B, C_k] per dataset (every head on every sample); expanded [B, e]; dataset [B]."""
        counts = global_dataset_counts(dataset, self.num_datasets)
        world = dist.get_world_size() if _distributed() else 1
        scale = world / counts.clamp(min=1.0)  # [K] sum over this rank's samples -> rank share of the mean
        smoothing = self.cfg.label_smoothing
        masks = [dataset == k for k in range(self.num_datasets)]

        ce = torch.stack([masked_cross_entropy_sum(logits[k], targets, masks[k], label_smoothing=smoothing)
                          for k in range(self.num_datasets)]) * scale
        task = ce
        terms = {"ce": ce.detach().sum()}
        if self.cfg.projection:
            if projection is None:
                raise ValueError("loss.projection is on but the model has no projection module")
            added = projection(logits)
            projected = [logits[k] + added[k] if self.cfg.projection_add else added[k]
                         for k in range(self.num_datasets)]
            proj = torch.stack([masked_cross_entropy_sum(projected[k], targets, masks[k], label_smoothing=smoothing)
                                for k in range(self.num_datasets)]) * scale
            task = task + proj
            terms["projection"] = proj.detach().sum()

        present = counts > 0
        if self.uncertainty is not None:
            total = self.uncertainty(task, present)
        else:
            total = (task * present.to(task.dtype)).sum()
        if self.cfg.informative:
            info = informative_term(expanded, weight=self.cfg.informative_weight, std_weight=self.cfg.std_weight,
                                    cov_weight=self.cfg.cov_weight)
            total = total + info
            terms["informative"] = info.detach()
        terms["loss"] = total.detach()
        return LossTerms(total, terms)
