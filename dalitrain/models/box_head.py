"""The action-localisation head (AVA): per-box action logits from the backbone's `feature_map`, as PySlowFast's
`ResNetRoIHead` and the co-finetuning paper's box head.

feature map [B, C, T', H', W'] -> mean over time [B, C, H', W'] -> ROI-Align of each box (`roi_align.py`, aligned,
output `resolution`) [N, C, r, r] -> max over the r x r cells [N, C] -> dropout -> linear [N, num_actions].
Boxes are [N, 5]: the index of the clip in the batch, then x1, y1, x2, y2 normalised to [0, 1] of the clip (what
the data carries), scaled here to the feature map's cells. AVA is multi-label: the logits go through a sigmoid and
binary cross-entropy per action (`box_loss`), not a softmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalitrain.models.roi_align import roi_align


class BoxHead(nn.Module):
    def __init__(self, dim: int, num_actions: int, resolution: tuple[int, int] = (7, 7), sampling_ratio: int = 0,
                 dropout: float = 0.5):
        super().__init__()
        self.resolution = resolution
        self.sampling_ratio = sampling_ratio  # 0: adaptive, as PySlowFast's ROIAlign
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_actions)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """features [B, C, T', H', W'], boxes [N, 5] -> logits [N, num_actions]."""
        x = features.mean(dim=2)  # [B, C, T', H', W'] -> [B, C, H', W']
        h, w = x.shape[-2:]
        scale = boxes.new_tensor([1.0, w, h, w, h])
        pooled = roi_align(x, boxes * scale, self.resolution, sampling_ratio=self.sampling_ratio)  # [N, C, r, r]
        pooled = pooled.amax(dim=(2, 3))  # [N, C, r, r] -> [N, C]
        return self.proj(self.dropout(pooled))


def box_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [N, A], multi-hot labels [N, A] -> the mean binary cross-entropy over boxes and actions."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
