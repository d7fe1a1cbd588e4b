"""The unit the pipelines hand to the engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Batch:
    video: torch.Tensor  # [B, C, T, H, W] normalised, float32 (or bfloat16 on GPU)
    label: torch.Tensor  # [B] int64, class id within the sample's own dataset (0 for localisation samples)
    dataset: torch.Tensor  # [B] int64, index into the config's `data.datasets`
    index: torch.Tensor  # [B] int64, the sample's manifest row (eval: the video it is a view of; AVA: the keyframe)
    valid: torch.Tensor  # [B] bool, False for padding duplicates that metrics must ignore
    # With a localisation dataset in the run (else None): every person box of the batch's localisation samples,
    # the clip's index in the batch then x1, y1, x2, y2 normalised to the clip [N, 5] (N varies, may be 0), and
    # their multi-hot actions [N, A].
    boxes: Optional[torch.Tensor] = None
    box_labels: Optional[torch.Tensor] = None

    def to(self, device: torch.device | str, non_blocking: bool = True) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) if t is not None else None for t in
                       (self.video, self.label, self.dataset, self.index, self.valid, self.boxes, self.box_labels)))
