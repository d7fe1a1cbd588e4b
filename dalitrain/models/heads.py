"""Heads on the pooled embedding: one classifier per dataset, the expander of the informative loss, and the
directed cross-dataset projections of MultiTrain's projection loss."""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn

from dalitrain.models.layers import GlobalBatchNorm1d


def classifier_head(embed_dim: int, num_classes: int, kind: Literal["linear", "mlp"], hidden_dim: int) -> nn.Module:
    """One dataset's head: a linear layer, or MultiTrain's 2-layer MLP (hidden 2048, GELU)."""
    if kind == "linear":
        return nn.Linear(embed_dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, num_classes))
    raise ValueError(f"unknown head {kind!r} (linear or mlp)")


class Expander(nn.Module):
    """embed -> hidden -> embed, VICReg-style (Linear, BatchNorm, GELU, Linear); the informative loss's input."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.norm = GlobalBatchNorm1d(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(z))))


class Projections(NamedTuple):
    """CrossDatasetProjection's output for a batch."""

    per_source: list[list[torch.Tensor]]  # [k][j]: W_ik Y_i [B, C_k] for the j-th other dataset i (ascending i)
    l1: torch.Tensor  # sum of |W| over every projection weight: the input of the optional sparsity regulariser

    def summed(self, k: int) -> torch.Tensor:
        """sum_{i != k} W_ik Y_i [B, C_k]."""
        return torch.stack(self.per_source[k]).sum(0)


class CrossDatasetProjection(nn.Module):
    """For every ordered pair (i -> k), i != k, a bias-free Linear(C_i -> C_k) fed with dataset i's logits.

    forward(logits).per_source[k] holds W_ik logits_i [B, C_k] for every i != k: the objective decides how to
    use them (added to logits_k, or each scored alone: `dalitrain.losses.multitrain`). Needs two datasets or more.
    Used in training only: an inference export drops these weights (MultiDatasetModel.inference_state_dict).

    The weights start as small random values (std `INIT_STD`), so that the projected logits start equal to the
    original ones and the relation report ranks what was learned, not the initial draw (with trunc-normal(0.02)
    the initial draw outweighed what training moved; README, "Design choices, measured").
    """
    INIT_STD = 1e-3

    def __init__(self, num_classes: list[int]):
        super().__init__()
        if len(num_classes) < 2:
            raise ValueError(f"cross-dataset projections need two datasets or more, got {len(num_classes)}")
        self.num_classes = list(num_classes)
        self.maps = nn.ModuleDict({
            self._key(i, k): nn.Linear(c_i, c_k, bias=False)
            for i, c_i in enumerate(self.num_classes) for k, c_k in enumerate(self.num_classes) if i != k})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in self.maps.values():
            nn.init.trunc_normal_(linear.weight, std=self.INIT_STD, a=-2 * self.INIT_STD, b=2 * self.INIT_STD)

    @staticmethod
    def _key(src: int, dst: int) -> str:
        return f"{src}_to_{dst}"

    def weight(self, src: int, dst: int) -> torch.Tensor:
        """[C_dst, C_src]: how each class of dataset `src` votes for each class of dataset `dst`."""
        if src == dst:
            raise ValueError(f"no projection from dataset {src} to itself")
        return self.maps[self._key(src, dst)].weight

    def forward(self, logits: list[torch.Tensor]) -> Projections:
        if len(logits) != len(self.num_classes):
            raise ValueError(f"CrossDatasetProjection: {len(logits)} logits tensors for {len(self.num_classes)} "
                             "datasets")
        per_source = [[self.maps[self._key(i, k)](y) for i, y in enumerate(logits) if i != k]
                      for k in range(len(logits))]
        l1 = torch.stack([linear.weight.abs().sum() for linear in self.maps.values()]).sum()
        return Projections(per_source, l1)
