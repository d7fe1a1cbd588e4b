"""Per-dataset cross-entropy on a mixed batch: each head is scored only on the samples of its own dataset.

A batch holds samples of several datasets; `label` is a class id within the sample's own dataset, so dataset k's
head must never see another dataset's labels (they may even be out of its range). Each dataset's loss is a SUM
over its samples here; the caller divides by the number of samples of that dataset in the whole (global) batch, so
that data-parallel ranks holding different shares of a dataset still add up to the single-process mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F


class LossTerms(NamedTuple):
    """What every method's criterion returns."""

    total: torch.Tensor  # what this rank back-propagates
    terms: dict[str, torch.Tensor]  # detached scalars; their mean over ranks is the global value


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_dataset_counts(dataset: torch.Tensor, num_datasets: int) -> torch.Tensor:
    """[K] float: samples of each dataset in the global batch (summed over ranks)."""
    counts = torch.bincount(dataset, minlength=num_datasets).to(torch.float32)
    if world_size() > 1:
        dist.all_reduce(counts)
    return counts


@dataclass
class Targets:
    """Labels after Mixup/CutMix: sample b's target is lam[b] * onehot(label[b]) + (1 - lam[b]) * onehot(mixed[b]).

    Without mixing, `mixed` equals `label` and `lam` is 1. Both labels always belong to the sample's own dataset.
    """

    label: torch.Tensor  # [B] int64
    mixed: torch.Tensor  # [B] int64
    lam: torch.Tensor  # [B] float
    box_labels: Optional[torch.Tensor] = None  # [N, A] multi-hot actions of the batch's boxes (localisation)

    @classmethod
    def plain(cls, label: torch.Tensor) -> "Targets":
        return cls(label, label, torch.ones(label.shape, dtype=torch.float32, device=label.device))


def masked_cross_entropy_sum(logits: torch.Tensor, targets: Targets, mask: torch.Tensor, *,
                             label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over the rows where `mask` is True of the (mixed, smoothed) cross-entropy of `logits` [B, C].

    Rows outside the mask contribute neither value nor gradient; an empty mask gives 0, still connected to
    `logits` (a zero gradient), so data-parallel reducers see the same graph on every rank.
    """
    rows = logits[mask].float()
    lam = targets.lam[mask]
    first = F.cross_entropy(rows, targets.label[mask], reduction="none", label_smoothing=label_smoothing)
    second = F.cross_entropy(rows, targets.mixed[mask], reduction="none", label_smoothing=label_smoothing)
    return (lam * first + (1.0 - lam) * second).sum()
