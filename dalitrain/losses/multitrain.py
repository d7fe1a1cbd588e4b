"""The MultiTrain objective (Liang et al., NeurIPS 2022) as its paper states it and as its released code trains it,
each an explicit choice in `LossConfig`.

Per dataset k, on its own samples only. Y_k: dataset k's logits; P_ik = W_ik Y_i: dataset i's logits projected
into k's classes (bias-free Linear, i != k); w: `loss.projection_weight` (MULTI_PROJ_LOSS_WEIGHT, 1.0).

| loss.projection | per-sample loss of dataset k       | where from                                         |
|-----------------|------------------------------------|----------------------------------------------------|
| none            | CE(Y_k)                            | plain multi-head training                          |
| paper           | CE(Y_k + w sum_i P_ik)             | the paper's Eq. 4-5 (Y'_k; no separate CE on Y_k)  |
| released        | CE(Y_k) + w mean_i CE(P_ik)        | the public configs (CROSS_PROJ_ADD_TO_PRED False)  |
| head_and_sum    | CE(Y_k) + CE(Y_k + w sum_i P_ik)   | dalitrain's objective until 2026-12-03             |

Reduction (`loss.reduction`); S_k is the sum over dataset k's samples in the global batch of B samples, N_k of
them from dataset k:
    per_sample   A_k = S_k, and the whole objective is divided by B (the released code: masked losses summed,
                 then / B), so a dataset weighs by its share of the batch;
    per_dataset  A_k = S_k / N_k: each dataset's mean, whatever its share.
Weighting (`loss.uncertainty`, `UncertaintyWeighting`), over the datasets present in the batch: `none` sums A_k;
`log_sigma` (the paper's Eq. 6) and `sigma_sq` (the released code) learn one sigma per dataset. With per_sample
their log terms are divided by B too, as in the released code. A dataset absent from the batch adds nothing; the
released code would still add its 0.5 log sigma^2, which no batch of its (512 clips from 3 datasets) ever lacks.
Then: + the informative loss (`informative_term`) + `loss.projection_sparsity` x sum |W| over every projection
(MULTI_PROJ_SPARSITY_LOSS_TYPE L1, MULTI_PROJ_SPARSITY_WEIGHT).

Evaluation always scores the heads Y_k; the projections are a training signal (the released code refuses them at
inference), under `paper` too, where Y_k is trained only through Y'_k.

Data parallel: each rank holds part of the global batch and adds its samples' S_k times the world size, with the
global B or N_k; DDP averages gradients over ranks, so the update is exactly that of one process holding the
whole batch. (The released code gathers the logits before the loss, which gives every rank the global value and,
after DDP's average, 1 / world size of its gradient: a learning-rate factor.) Every logged term is "rank share x
world size": its mean over ranks is the global value. `ce` is always the heads' own cross-entropy, also under
`paper`, where it is logged but not a term of the objective.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

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
        self.uncertainty: Optional[UncertaintyWeighting] = (
            None if cfg.uncertainty == "none" else UncertaintyWeighting(num_datasets, cfg.uncertainty))

    def forward(self, output: "ModelOutput", targets: Targets, dataset: torch.Tensor) -> LossTerms:
        """output: every head on every sample (`logits`, one [B, C_k] per dataset), the expander's [B, e] and the
        projections when the terms that need them are on; dataset [B]."""
        cfg = self.cfg
        counts = global_dataset_counts(dataset, self.num_datasets)  # [K]
        if cfg.reduction == "per_sample":
            batch = counts.sum().clamp(min=1.0)
            scale = torch.ones_like(counts) * (world_size() / batch)  # [K]
            regulariser_scale = 1.0 / batch
        else:
            scale = world_size() / counts.clamp(min=1.0)
            regulariser_scale = torch.ones(())

        def reduced(logits_of: list[torch.Tensor]) -> torch.Tensor:
            """[K]: each dataset's summed cross-entropy of logits_of[k] on its own samples, times `scale`."""
            return torch.stack([masked_cross_entropy_sum(logits_of[k], targets, dataset == k,
                                                         label_smoothing=cfg.label_smoothing)
                                for k in range(self.num_datasets)]) * scale

        head_ce = reduced(output.logits)
        terms = {"ce": head_ce.detach().sum()}
        task = head_ce
        if cfg.projection != "none":
            projections = output.projected
            if projections is None:
                raise ValueError(f"loss.projection is {cfg.projection} but the model has no projection module")
            w = cfg.projection_weight
            if cfg.projection == "released":
                # every dataset has K - 1 sources: the j-th one of each dataset at a time, then the mean over j
                proj = torch.stack([reduced(list(sources)) for sources in zip(*projections.per_source)]).mean(0) * w
            else:  # paper, head_and_sum: Y'_k = Y_k + w sum_i P_ik
                proj = reduced([y + w * projections.summed(k) for k, y in enumerate(output.logits)])
            task = proj if cfg.projection == "paper" else head_ce + proj
            terms["projection"] = proj.detach().sum()

        present = counts > 0
        if self.uncertainty is not None:
            total = self.uncertainty(task, present, regulariser_scale)
        else:
            total = (task * present.to(task.dtype)).sum()
        if cfg.informative:
            if output.expanded is None:
                raise ValueError("loss.informative is on but the model has no expander")
            info = informative_term(output.expanded, weight=cfg.informative_weight, std_weight=cfg.std_weight,
                                    cov_weight=cfg.cov_weight)
            total = total + info
            terms["informative"] = info.detach()
        if cfg.projection_sparsity > 0:
            sparsity = cfg.projection_sparsity * output.projected.l1
            total = total + sparsity
            terms["sparsity"] = sparsity.detach()
        terms["loss"] = total.detach()
        return LossTerms(total, terms)
