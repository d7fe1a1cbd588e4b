"""Person boxes through a clip's spatial augmentation, from the same numbers that drive the DALI graph: the crop
window in source pixels (`pipelines.decode.Window.box`, the graph's `crop_window`) and the flip of the sample's plan.

boxes [N, 4] x1, y1, x2, y2 normalised to the source frame -> normalised to the crop:
    x -> (x W - left) / box_w, y -> (y H - top) / box_h  (scaling the crop to crop x crop keeps normalised values);
    jitter (training): each side moves uniformly by up to `jitter` of the box's size (0.15 for AVA training), drawn
    from the sample's own generator so that a resumed run draws the same;
    clipped to [0, 1]; a box left with less than `min_visible` of its area inside the crop is dropped;
    flip: x -> 1 - x (x1 and x2 swap).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def boxes_in_clip(boxes: np.ndarray, frame_hw: tuple[int, int], window: tuple[int, int, int, int], flip: bool, *,
                  jitter: float = 0.0, rng: Optional[np.random.Generator] = None,
                  min_visible: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """boxes [N, 4] normalised to the frame; window (top, left, box_h, box_w) in source pixels -> (boxes [M, 4]
    normalised to the crop, kept [N] bool saying which input boxes they are)."""
    height, width = frame_hw
    top, left, box_h, box_w = window
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = (boxes[:, 0] * width - left) / box_w
    y1 = (boxes[:, 1] * height - top) / box_h
    x2 = (boxes[:, 2] * width - left) / box_w
    y2 = (boxes[:, 3] * height - top) / box_h
    if jitter > 0:
        if rng is None:
            raise ValueError("box jitter needs the sample's random generator (resume must replay it)")
        size = np.stack([x2 - x1, y2 - y1, x2 - x1, y2 - y1], axis=1)  # [N, 4]
        shift = rng.uniform(-jitter, jitter, size=size.shape) * size
        x1, y1, x2, y2 = (np.stack([x1, y1, x2, y2], axis=1) + shift).T
    area = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    clipped = np.stack([np.clip(v, 0.0, 1.0) for v in (x1, y1, x2, y2)], axis=1)  # [N, 4]
    inside = np.maximum(clipped[:, 2] - clipped[:, 0], 0.0) * np.maximum(clipped[:, 3] - clipped[:, 1], 0.0)
    kept = (area > 0) & (inside >= min_visible * np.where(area > 0, area, 1.0))
    out = clipped[kept]
    if flip:
        out = np.stack([1.0 - out[:, 2], out[:, 1], 1.0 - out[:, 0], out[:, 3]], axis=1)
    return out, kept


def batch_boxes(per_clip: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[(boxes [M_b, 4] in clip b's crop, labels [M_b, A])] -> what a batch carries: boxes [N, 5] (the clip's index
    in the batch, then x1, y1, x2, y2) and box_labels [N, A], N = sum of M_b (it varies from batch to batch)."""
    actions = next((labels.shape[1] for _, labels in per_clip if labels.ndim == 2), 0)
    rows = [np.concatenate([np.full((len(boxes), 1), b, dtype=np.float32), boxes.astype(np.float32)], axis=1)
            for b, (boxes, _) in enumerate(per_clip)]
    labels = [labels.astype(np.float32).reshape(-1, actions) for _, labels in per_clip]
    return (np.concatenate(rows) if rows else np.zeros((0, 5), np.float32),
            np.concatenate(labels) if labels else np.zeros((0, actions), np.float32))
