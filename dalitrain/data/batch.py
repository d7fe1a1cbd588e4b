"""The unit the pipelines hand to the engine."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    video: torch.Tensor  # [B, C, T, H, W] normalised, float32 (or bfloat16 on GPU)
    label: torch.Tensor  # [B] int64, class id within the sample's own dataset
    dataset: torch.Tensor  # [B] int64, index into the config's `data.datasets`
    index: torch.Tensor  # [B] int64, the sample's manifest row (eval: the video it is a view of)
    valid: torch.Tensor  # [B] bool, False for padding duplicates that metrics must ignore

    def to(self, device: torch.device | str, non_blocking: bool = True) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in
                       (self.video, self.label, self.dataset, self.index, self.valid)))
