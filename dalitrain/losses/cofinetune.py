"""The co-finetuning objective (Arnab, Xiong et al. 2022, Eq. 4): each sample's cross-entropy on its own dataset's
head, with no per-dataset weights (the paper avoids that hyperparameter on purpose).

    L = (1 / |global batch|) * sum_b CE(head_{d_b}(z_b), y_b)

With `data.mixing: per_batch` (the recipe) the whole global batch comes from one dataset, so L is that head's mean
cross-entropy and the other heads receive zero gradients; with mixed batches each dataset weighs by its share of
the batch, which is what drawing from the concatenated datasets means. Every head stays in the graph (a masked
sum over no rows is a zero connected to the logits), so data-parallel training needs no unused-parameter search
and every rank runs the same collectives whatever dataset it holds.

A localisation dataset (AVA) is one more dataset whose samples are scored per person box, as the paper's
co-finetuning with AVA: binary cross-entropy of the box head's logits against the box's multi-hot actions, averaged
over actions, then over the boxes of the global batch, and weighted by the localisation clips' share of the global
batch (1 for a batch of AVA alone, as per-batch sampling gives):

    L_box = (n_loc / |global batch|) * (1 / |global boxes|) * sum_boxes mean_a BCE(s_na, y_na)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dalitrain.losses.classification import (LossTerms, Targets, global_dataset_counts,
                                            masked_cross_entropy_sum, world_size)

if TYPE_CHECKING:
    from dalitrain.models.multi_dataset import ModelOutput


class CoFinetuneLoss(nn.Module):
    def __init__(self, num_datasets: int, label_smoothing: float = 0.0, box_dataset: Optional[int] = None):
        super().__init__()
        self.num_datasets = num_datasets
        self.label_smoothing = label_smoothing
        self.box_dataset = box_dataset  # the localisation dataset: boxes and BCE instead of its clip's CE

    def forward(self, output: "ModelOutput", targets: Targets, dataset: torch.Tensor) -> LossTerms:
        """output.logits: one [B, C_k] per dataset; dataset [B]. Summed over this rank's rows and scaled by
        world size / global batch size, so DDP's gradient average is the single-process mean."""
        counts = global_dataset_counts(dataset, self.num_datasets)
        batch = counts.sum().clamp(min=1.0)
        ce = sum(masked_cross_entropy_sum(output.logits[k], targets, dataset == k, label_smoothing=self.label_smoothing)
                 for k in range(self.num_datasets) if k != self.box_dataset) * (world_size() / batch)
        if self.box_dataset is None:
            return LossTerms(ce, {"ce": ce.detach(), "loss": ce.detach()})
        per_box = F.binary_cross_entropy_with_logits(output.box_logits.float(), targets.box_labels.float(),
                                                     reduction="none").mean(dim=1)  # [N]
        boxes = torch.tensor(float(per_box.shape[0]), device=per_box.device)
        if world_size() > 1:
            dist.all_reduce(boxes)
        share = counts[self.box_dataset] / batch
        box = per_box.sum() * (world_size() / boxes.clamp(min=1.0)) * share
        total = ce + box
        return LossTerms(total, {"ce": ce.detach(), "box_bce": box.detach(), "loss": total.detach()})
