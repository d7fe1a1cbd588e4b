"""ROI-Align in PyTorch with the semantics of torchvision's `roi_align` (torchvision's compiled ops do not load beside
the CPU torch wheel, so dalitrain does not depend on it).

features [N, C, H, W], boxes [K, 5] = (batch index, x1, y1, x2, y2) in input pixels -> [K, C, ph, pw].

For each box (torchvision's `roi_align`, `aligned=True` shifts the box by half a pixel so that a pixel's value sits
at its centre: box (0.5, 0.5, 1.5, 1.5) is exactly pixel (0, 0)):
    start = box * spatial_scale - offset (offset 0.5 when aligned, else 0); size = end - start (at least 1 when not
    aligned); each of the ph x pw bins is size / (ph, pw);
    each bin averages a grid of sample points, `sampling_ratio` per side, or ceil(bin size) per side when
    `sampling_ratio` <= 0 (adaptive: an empty box has no point and gives 0), point (iy, ix) at
    start + bin * index + (iy + 0.5) * bin / grid;
    a point's value is bilinear between the four pixels around it; a point beyond one pixel outside the map
    (y < -1 or y > H, same for x) is 0; a point in [-1, 0] reads the border pixel; past the last pixel, the last.
Bilinear sampling separates into a weight over rows times a weight over columns, and so does the out-of-map rule,
so the average over a bin's grid is Ay [ph, H] @ features @ Ax [pw, W]^T with Ay, Ax summed over the grid: one
einsum, differentiable through the features (boxes get no gradient, as torchvision's).
"""
from __future__ import annotations

import torch


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = True) -> torch.Tensor:
    """features [N, C, H, W], boxes [K, 5] -> [K, C, ph, pw] (module docstring)."""
    N, C, H, W = features.shape
    ph, pw = output_size
    if boxes.shape[0] == 0:
        return features.new_zeros(0, C, ph, pw)
    boxes = boxes.detach().to(torch.float64)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (boxes[:, i] * spatial_scale - offset for i in range(1, 5))  # each [K]
    height, width = y2 - y1, x2 - x1
    if not aligned:  # torchvision's legacy behaviour: a box is at least one pixel
        height, width = height.clamp(min=1.0), width.clamp(min=1.0)
    grid_h, grid_w = _grid(height / ph, sampling_ratio), _grid(width / pw, sampling_ratio)  # [K]
    rows = _axis_weights(y1, height / ph, ph, grid_h, H)  # [K, ph, H]
    cols = _axis_weights(x1, width / pw, pw, grid_w, W)  # [K, pw, W]
    count = (grid_h * grid_w).clamp(min=1.0)  # [K]
    chosen = features[boxes[:, 0].long()]  # [K, C, H, W]
    dtype = features.dtype
    out = torch.einsum("kih,kchw,kjw->kcij", rows.to(dtype), chosen, cols.to(dtype))  # [K, C, ph, pw]
    return out / count.to(dtype)[:, None, None, None]


def _grid(bin_size: torch.Tensor, sampling_ratio: int) -> torch.Tensor:
    """Sample points per side of a bin, per box [K] (float, for the arithmetic)."""
    if sampling_ratio > 0:
        return torch.full_like(bin_size, float(sampling_ratio))
    return torch.ceil(bin_size)


def _axis_weights(start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: torch.Tensor,
                  size: int) -> torch.Tensor:
    """[K, bins, size]: for each box and bin, the bilinear weight of each pixel summed over the bin's sample
    points along this axis."""
    K = start.shape[0]
    points = max(int(grid.max().item()), 1)
    index = torch.arange(bins, dtype=torch.float64)[None, :, None]  # [1, bins, 1]
    step = torch.arange(points, dtype=torch.float64)[None, None, :]  # [1, 1, G]
    coords = (start[:, None, None] + index * bin_size[:, None, None]
              + (step + 0.5) * bin_size[:, None, None] / grid.clamp(min=1.0)[:, None, None])  # [K, bins, G]
    used = (step < grid[:, None, None]) & (coords >= -1.0) & (coords <= size)  # in the grid and near the map
    coords = coords.clamp(min=0.0)
    low = coords.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(coords), coords - low)
    weights = torch.zeros(K, bins, points, size, dtype=torch.float64)
    weights.scatter_add_(3, low[..., None], ((1.0 - frac) * used)[..., None])
    weights.scatter_add_(3, high[..., None], (frac * used)[..., None])
    return weights.sum(dim=2)  # [K, bins, size]
