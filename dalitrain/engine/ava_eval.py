"""AVA frame-mAP: the files users have (label map, box CSVs, excluded timestamps) and the metric of the official
evaluation (ActivityNet's `get_ava_performance.py`, PASCAL VOC frame-AP at IoU 0.5), reimplemented.

Files:
- label map (`.pbtxt`): `item { name: "..." id: N }` entries (`label_id:` also read);
- box CSV, one row per (box, action): `video_id, timestamp, x1, y1, x2, y2, action_id[, person_id][, score]`,
  coordinates normalised to [0, 1]. Ground truth has 7 or 8 columns (person id), detections 8 (score last);
- excluded timestamps: `video_id, timestamp` rows.
A frame is the key `video_id,%04d` of the integer timestamp, as the official script makes it.

Metric, as the official evaluation computes it:
- excluded frames are dropped from ground truth and detections; only the label map's classes count;
- detections keep the 50 highest-scored rows of each frame (the official `capacity`);
- per class, detections of all frames are ranked by score; within a frame each detection, in score order, takes
  the ground-truth box of the same class it overlaps most (IoU, continuous coordinates); IoU >= 0.5 and that box
  not yet taken: a true positive, else a false positive (VOC: a taken best box is not replaced by the next best);
- AP = the area under the precision-recall curve with precision made monotonically decreasing (VOC 2010+);
- mAP = the mean over the label map's classes that have ground truth (a class without any is left out).
Rows that break the format (coordinates outside [0, 1], x1 >= x2 or y1 >= y2, an action id not in the label map, a
wrong column count) are refused with file and line, or skipped with one warning line each (`bad_rows="skip"`).
"""
from __future__ import annotations

import csv
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from dalitrain.errors import InputError

IOU_THRESHOLD = 0.5
DETECTIONS_PER_FRAME = 50  # the official evaluation's `capacity` for detections
BadRows = Literal["refuse", "skip"]


@dataclass(frozen=True)
class Box:
    score: float
    action: int
    y1: float
    x1: float
    y2: float
    x2: float


Frames = dict[str, list[Box]]  # frame key -> boxes, highest score first


def frame_key(video_id: str, timestamp: str | float) -> str:
    return f"{video_id},{int(float(timestamp)):04d}"


def read_labelmap(path: str | Path) -> dict[int, str]:
    """Action id -> name, from `name: "..."` and `id: N` (or `label_id: N`) lines."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: label map not found") from None
    names, name = {}, None
    for line in text.splitlines():
        if match := re.match(r'\s*name:\s*"(.*)"', line):
            name = match.group(1)
        elif match := re.match(r"\s*(?:label_)?id:\s*(\d+)", line):
            names[int(match.group(1))] = name or f"action {match.group(1)}"
            name = None
    if not names:
        raise InputError(f"{path}: no `id:` entries (not an AVA label map)")
    return names


def read_exclusions(path: Optional[str | Path]) -> set[str]:
    if path is None:
        return set()
    path = Path(path)
    excluded = set()
    for number, row in _rows(path):
        if len(row) != 2:
            raise InputError(f"{path}:{number}: expected video_id,timestamp, got {len(row)} columns")
        excluded.add(frame_key(row[0], _number(row[1], path, number, "timestamp")))
    return excluded


def read_boxes(path: str | Path, actions: set[int], *, scored: bool, bad_rows: BadRows = "refuse") -> Frames:
    """Ground truth (`scored=False`: 7 or 8 columns) or detections (`scored=True`: 8, the score last)."""
    path = Path(path)
    frames: Frames = defaultdict(list)
    for number, row in _rows(path):
        try:
            box = _box(row, actions, scored)
        except ValueError as err:
            if bad_rows == "refuse":
                raise InputError(f"{path}:{number}: {err}") from None
            print(f"dalitrain: warning: {path}:{number}: {err}; row skipped", file=sys.stderr)
            continue
        frames[frame_key(row[0], row[1])].append(box)
    for boxes in frames.values():
        boxes.sort(key=lambda b: -b.score)
    return dict(frames)


def _rows(path: Path):
    try:
        with open(path, newline="") as f:
            yield from ((n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1) if row)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None


def _number(text: str, path: Path, number: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}:{number}: {what} {text!r} is not a number") from None


def _box(row: list[str], actions: set[int], scored: bool) -> Box:
    if len(row) not in ((8,) if scored else (7, 8)):
        raise ValueError(f"{len(row)} columns, expected {'8 (... action_id, score)' if scored else '7 or 8'}")
    try:
        float(row[1])
        x1, y1, x2, y2 = (float(v) for v in row[2:6])
        action = int(row[6])
        score = float(row[7]) if scored else 1.0
    except ValueError as err:
        raise ValueError(f"not a number ({err})") from None
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise ValueError(f"coordinates {x1}, {y1}, {x2}, {y2} outside [0, 1]")
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"empty box (x1 {x1} >= x2 {x2} or y1 {y1} >= y2 {y2})")
    if action not in actions:
        raise ValueError(f"action id {action} not in the label map")
    return Box(score, action, y1, x1, y2, x2)


def iou(a: Box, b: Box) -> float:
    inter_h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter_w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    inter = inter_h * inter_w
    union = (a.y2 - a.y1) * (a.x2 - a.x1) + (b.y2 - b.y1) * (b.x2 - b.x1) - inter
    return inter / union if union > 0 else 0.0


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


def write_detections(path: str | Path, rows: list[tuple[str, float, float, float, float, float, int, float]]) -> Path:
    """(video_id, timestamp, x1, y1, x2, y2, action_id, score) rows in the official CSV format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{video},{int(timestamp):04d},{x1:.6f},{y1:.6f},{x2:.6f},{y2:.6f},{action},{score:.6f}"
             for video, timestamp, x1, y1, x2, y2, action, score in rows]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path
