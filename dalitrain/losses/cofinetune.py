"""The co-finetuning objective (Arnab, Xiong et al. 2022, Eq. 4): each sample's cross-entropy on its own dataset's
head, with no per-dataset weights (the paper avoids that hyperparameter on purpose).

    L = (1 / |global batch|) * sum_b CE(head_{d_b}(z_b), y_b)

With `data.mixing: per_batch` (the recipe) the whole global batch comes from one dataset, so L is that head's mean
cross-entropy and the other heads receive zero gradients; with mixed batches each dataset weighs by its share of
the batch, which is what drawing from the concatenated datasets means. Every head stays in the graph (a masked
sum over no rows is a zero connected to the logits), so data-parallel training needs no unused-parameter search
and every rank runs the same collectives whatever dataset it holds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dalitrain.losses.classification import (LossTerms, Targets, global_dataset_counts,
                                            masked_cross_entropy_sum, world_size)

if TYPE_CHECKING:
    from dalitrain.models.multi_dataset import ModelOutput


class CoFinetuneLoss(nn.Module):
    def __init__(self, num_datasets: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_datasets = num_datasets
        self.label_smoothing = label_smoothing

    def forward(self, output: "ModelOutput", targets: Targets, dataset: torch.Tensor) -> LossTerms:
        """output.logits: one [B, C_k] per dataset; dataset [B]. Summed over this rank's rows and scaled by
        world size / global batch size, so DDP's gradient average is the single-process mean."""
        batch = global_dataset_counts(dataset, self.num_datasets).sum().clamp(min=1.0)
        per_dataset = torch.stack([
            masked_cross_entropy_sum(output.logits[k], targets, dataset == k, label_smoothing=self.label_smoothing)
            for k in range(self.num_datasets)]) * (world_size() / batch)
        total = per_dataset.sum()
        return LossTerms(total, {"ce": total.detach(), "loss": total.detach()})
