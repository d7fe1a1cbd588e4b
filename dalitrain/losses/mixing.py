"""Mixup and CutMix for video, applied within each dataset's samples of a mixed batch.

Labels of different datasets live in different label spaces, so a sample is only ever mixed with another sample
of its own dataset (a random permutation inside each dataset's group; a dataset with one sample in the batch is
paired with itself, which leaves it unchanged). One mixing coefficient per batch, as in Mixup/CutMix; CutMix cuts
the same spatial box through all frames and sets lam to the share of the clip that was kept. Randomness comes
from torch's global generator, which checkpoints save and restore, so resumed runs mix identically.
"""
from __future__ import annotations

from typing import Optional

import torch

from dalitrain.losses.classification import Targets


def permutation_within_groups(group: torch.Tensor) -> torch.Tensor:
    """[B] index: partner is a random permutation that maps every sample to one of its own group (int64 ids).

    Sorting by group alone (stably) and by group plus a random fraction lists the same groups in the same places,
    the second in random order within each group: matching the two lists position by position pairs every sample
    with a random member of its group. No host sync (no unique or nonzero), so a GPU step is not stalled."""
    by_group = torch.argsort(group, stable=True)
    shuffled = torch.argsort(group.double() + torch.rand(group.shape, dtype=torch.float64, device=group.device))
    partner = torch.empty_like(by_group)
    partner[by_group] = shuffled
    return partner


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def _cut_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """A random box covering about 1 - lam of the frame (clipped at the borders), as (y0, y1, x0, x1)."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, ()))
    cx = int(torch.randint(width, ()))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def mix_within_datasets(video: torch.Tensor, label: torch.Tensor, dataset: torch.Tensor, *,
                        mixup_alpha: float, cutmix_alpha: float,
                        alone: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Targets]:
    """Mixup or CutMix (chosen at random when both alphas are > 0) on video [B, C, T, H, W]; rows where `alone`
    [B] is True (localisation clips, whose boxes would not survive mixing) are each their own partner: unchanged.

    Returns the mixed video and the targets; with both alphas 0 the input comes back unchanged.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return video, Targets.plain(label)
    if alone is not None:  # a group of its own for each such row: ids past every dataset's
        rows = torch.arange(dataset.shape[0], device=dataset.device)
        dataset = torch.where(alone, dataset.max() + 1 + rows, dataset)
    partner = permutation_within_groups(dataset)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or bool(torch.rand(()) < 0.5))
    if use_cutmix:
        lam = _beta(cutmix_alpha)
        height, width = video.shape[-2:]
        y0, y1, x0, x1 = _cut_box(height, width, lam)
        video = video.clone()
        video[..., y0:y1, x0:x1] = video[partner][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    else:
        lam = _beta(mixup_alpha)
        video = torch.lerp(video[partner], video, lam)  # lam video + (1 - lam) partner; exact for a self-partner
    lam_rows = torch.full(label.shape, lam, dtype=torch.float32, device=label.device)
    return video, Targets(label, label[partner], lam_rows)
