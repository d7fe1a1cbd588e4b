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

from typing import TYPE_CHECKING

import torch
from torch import nn

from dalitrain.config import LossConfig
from dalitrain.losses.classification import (LossTerms, Targets, global_dataset_counts,
                                            masked_cross_entropy_sum, world_size)
from dalitrain.losses.informative import informative_term
from dalitrain.losses.uncertainty import UncertaintyWeighting

if TYPE_CHECKING:
    from dalitrain.models.multi_dataset import ModelOutput


class MultiTrainLoss(nn.Module):
    def __init__(self, cfg: LossConfig, num_datasets: int):
        super().__init__()
        self.cfg = cfg
        self.num_datasets = num_datasets
        self.uncertainty = UncertaintyWeighting(num_datasets) if cfg.uncertainty else None

    def forward(self, output: "ModelOutput", targets: Targets, dataset: torch.Tensor) -> LossTerms:
        """output: every head on every sample (`logits`, one [B, C_k] per dataset), the expander's [B, e] and the
        projected logits when the terms that need them are on; dataset [B]."""
        logits = output.logits
        counts = global_dataset_counts(dataset, self.num_datasets)
        scale = world_size() / counts.clamp(min=1.0)  # [K] sum over this rank's samples -> rank share of the mean
        smoothing = self.cfg.label_smoothing
        masks = [dataset == k for k in range(self.num_datasets)]

        ce = torch.stack([masked_cross_entropy_sum(logits[k], targets, masks[k], label_smoothing=smoothing)
                          for k in range(self.num_datasets)]) * scale
        task = ce
        terms = {"ce": ce.detach().sum()}
        if self.cfg.projection:
            added = output.projected
            if added is None:
                raise ValueError("loss.projection is on but the model has no projection module")
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
            if output.expanded is None:
                raise ValueError("loss.informative is on but the model has no expander")
            info = informative_term(output.expanded, weight=self.cfg.informative_weight, std_weight=self.cfg.std_weight,
                                    cov_weight=self.cfg.cov_weight)
            total = total + info
            terms["informative"] = info.detach()
        terms["loss"] = total.detach()
        return LossTerms(total, terms)
