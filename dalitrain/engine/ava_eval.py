"""AVA frame-mAP, the metric of the official evaluation (ActivityNet's `get_ava_performance.py`, PASCAL VOC frame-AP
at IoU 0.5), reimplemented on the frames `dalitrain.data.ava` reads:
- excluded frames are dropped from ground truth and detections; only the label map's classes count;
- detections keep the 50 highest-scored rows of each frame (the official `capacity`);
- per class, detections of all frames are ranked by score; within a frame each detection, in score order, takes
  the ground-truth box of the same class it overlaps most (IoU, continuous coordinates); IoU >= 0.5 and that box
  not yet taken: a true positive, else a false positive (VOC: a taken best box is not replaced by the next best);
- AP = the area under the precision-recall curve with precision made monotonically decreasing (VOC 2010+);
- mAP = the mean over the label map's classes that have ground truth (a class without any is left out).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import numpy as np

from dalitrain.data.ava import Frames, iou

IOU_THRESHOLD = 0.5
DETECTIONS_PER_FRAME = 50  # the official evaluation's `capacity` for detections


def average_precision(scores: np.ndarray, true_positive: np.ndarray, positives: int) -> float:
    """VOC 2010+ AP of detections (score, is a true positive) against `positives` ground-truth boxes."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(true_positive[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / positives
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotonically decreasing from the right
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def frame_map(groundtruth: Frames, detections: Frames, actions: dict[int, str],
              excluded: set[str] = frozenset()) -> dict:
    """{"map": mAP, "ap": {action id: AP or None (no ground truth)}, "positives": {action id: boxes}}."""
    scores: dict[int, list[float]] = defaultdict(list)
    hits: dict[int, list[bool]] = defaultdict(list)
    positives: dict[int, int] = defaultdict(int)
    for key, boxes in groundtruth.items():
        if key not in excluded:
            for box in boxes:
                positives[box.action] += 1
    for key, found in detections.items():
        if key in excluded:
            continue
        truth = groundtruth.get(key, [])
        for action in {b.action for b in found[:DETECTIONS_PER_FRAME]}:
            targets = [t for t in truth if t.action == action]
            taken = [False] * len(targets)
            for box in (b for b in found[:DETECTIONS_PER_FRAME] if b.action == action):  # highest score first
                overlaps = [iou(box, t) for t in targets]
                best = int(np.argmax(overlaps)) if overlaps else -1
                hit = best >= 0 and overlaps[best] >= IOU_THRESHOLD and not taken[best]
                if hit:
                    taken[best] = True
                scores[action].append(box.score)
                hits[action].append(hit)
    ap = {}
    for action in sorted(actions):
        if positives[action] == 0:
            ap[action] = None
        else:
            ap[action] = average_precision(np.array(scores[action], dtype=np.float64),
                                           np.array(hits[action], dtype=np.float64), positives[action])
    counted = [v for v in ap.values() if v is not None]
    return {"map": float(np.mean(counted)) if counted else float("nan"), "ap": ap, "positives": dict(positives)}


def frequency_split(ap: dict[int, Optional[float]], train_counts: dict[int, int], head_min: int = 10_000,
                    tail_max: int = 1_000) -> dict[str, Optional[float]]:
    """mAP over the head, mid and tail classes by training instances: head > `head_min`, tail < `tail_max`, mid the
    rest (the co-finetuning paper's Table 3: 10,000 and 1,000 on AVA v2.2). A group without a class that has ground
    truth gives None."""
    groups: dict[str, list[float]] = {"head": [], "mid": [], "tail": []}
    for action, value in ap.items():
        if value is None:
            continue
        count = train_counts.get(action, 0)
        groups["head" if count > head_min else "tail" if count < tail_max else "mid"].append(value)
    return {name: float(np.mean(values)) if values else None for name, values in groups.items()}
