"""The AVA files as users have them: the label map (`.pbtxt`), box CSVs (annotations, detections, person proposals
with scores) and the excluded-timestamps CSV.

- label map: `item { name: "..." id: N }` entries (`label_id:` also read);
- box CSV, one row per (box, action): `video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]` for annotations
  (7 or 8 columns), `video_id, timestamp, x1, y1, x2, y2, action_id, score` for detections; coordinates normalised to
  [0, 1];
- proposals (the released person detector's boxes): `video_id, timestamp, x1, y1, x2, y2, [action_id], score`,
  kept at or above a score threshold (0.8 for training, 0.2 for evaluation in the co-finetuning paper);
- excluded timestamps: `video_id, timestamp` rows.
A frame is the key `video_id,%04d` of the integer timestamp, as the official evaluation makes it. Rows that break
the format (coordinates outside [0, 1], x1 >= x2 or y1 >= y2, an action id not in the label map, a video not in
the dataset, a wrong column count) are refused with file and line, or skipped with one warning line each
(`bad_rows="skip"`).
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

BadRows = Literal["refuse", "skip"]


@dataclass(frozen=True)
class Box:
    """One row: a box with its action (-1 for a proposal) and score (1 for an annotation), the official
    evaluation's (y1, x1, y2, x2) order."""
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


def read_boxes(path: str | Path, actions: set[int], *, scored: bool, videos: Optional[set[str]] = None,
               bad_rows: BadRows = "refuse") -> Frames:
    """Annotations (`scored=False`: 7 or 8 columns) or detections (`scored=True`: 8, the score last); `videos`:
    the dataset's video ids (others are bad rows)."""
    return _read(path, lambda row: _box(row, actions, scored, videos), bad_rows)


def read_proposals(path: str | Path, *, threshold: float, videos: Optional[set[str]] = None,
                   bad_rows: BadRows = "refuse") -> Frames:
    """Person proposals (`video_id, timestamp, x1, y1, x2, y2, [action_id,] score`) at or above `threshold`;
    their `action` is -1."""
    frames = _read(path, lambda row: _proposal(row, videos), bad_rows)
    kept = {key: [b for b in boxes if b.score >= threshold] for key, boxes in frames.items()}
    return {key: boxes for key, boxes in kept.items() if boxes}


def _read(path: str | Path, parse, bad_rows: BadRows) -> Frames:
    path = Path(path)
    frames: Frames = defaultdict(list)
    for number, row in _rows(path):
        try:
            box = parse(row)
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


def _box(row: list[str], actions: set[int], scored: bool, videos: Optional[set[str]]) -> Box:
    if len(row) not in ((8,) if scored else (7, 8)):
        raise ValueError(f"{len(row)} columns, expected {'8 (... action_id, score)' if scored else '7 or 8'}")
    try:
        action = int(row[6])
        score = float(row[7]) if scored else 1.0
    except ValueError as err:
        raise ValueError(f"not a number ({err})") from None
    if action not in actions:
        raise ValueError(f"action id {action} not in the label map")
    return _checked(row, videos, score, action)


def _proposal(row: list[str], videos: Optional[set[str]]) -> Box:
    if len(row) not in (7, 8):
        raise ValueError(f"{len(row)} columns, expected 7 or 8 (... x2, y2, [action_id,] score)")
    try:
        score = float(row[-1])
    except ValueError as err:
        raise ValueError(f"not a number ({err})") from None
    return _checked(row, videos, score, -1)


def _checked(row: list[str], videos: Optional[set[str]], score: float, action: int) -> Box:
    """The box of a row's timestamp and coordinates, checked."""
    if videos is not None and row[0] not in videos:
        raise ValueError(f"video {row[0]!r} is not in the dataset")
    try:
        float(row[1])
        x1, y1, x2, y2 = (float(v) for v in row[2:6])
    except ValueError as err:
        raise ValueError(f"not a number ({err})") from None
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise ValueError(f"coordinates {x1}, {y1}, {x2}, {y2} outside [0, 1]")
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"empty box (x1 {x1} >= x2 {x2} or y1 {y1} >= y2 {y2})")
    return Box(score, action, y1, x1, y2, x2)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes in continuous coordinates (the official evaluation's)."""
    inter_h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter_w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    inter = inter_h * inter_w
    union = (a.y2 - a.y1) * (a.x2 - a.x1) + (b.y2 - b.y1) * (b.x2 - b.x1) - inter
    return inter / union if union > 0 else 0.0


def label_proposals(truth: Frames, proposals: Frames, min_iou: float = 0.5) -> Frames:
    """Training proposals with actions: each proposal of an annotated keyframe takes the actions of the annotated
    person box it overlaps most, when that IoU is at least `min_iou`; otherwise it is a negative (action -1, no
    action). One row per (box, action), as the annotation CSV; keyframes without annotations are left out."""
    labelled: Frames = {}
    for key, people in truth.items():
        rows = []
        for proposal in proposals.get(key, []):
            overlaps = [(iou(proposal, person), person) for person in people]
            best = max((o for o, _ in overlaps), default=0.0)
            actions = {p.action for o, p in overlaps if o == best} if best >= min_iou else {-1}
            rows += [Box(proposal.score, action, proposal.y1, proposal.x1, proposal.y2, proposal.x2)
                     for action in sorted(actions)]
        labelled[key] = rows
    return labelled


def write_detections(path: str | Path, rows: list[tuple[str, float, float, float, float, float, int, float]]) -> Path:
    """(video_id, timestamp, x1, y1, x2, y2, action_id, score) rows in the official CSV format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{video},{int(timestamp):04d},{x1:.6f},{y1:.6f},{x2:.6f},{y2:.6f},{action},{score:.6f}"
             for video, timestamp, x1, y1, x2, y2, action, score in rows]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


@dataclass(frozen=True)
class Keyframe:
    """One annotated keyframe: its person boxes and each box's actions as a multi-hot row."""
    video: str
    timestamp: int
    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2 normalised
    labels: np.ndarray  # [N, A] 0/1 over the label map's action ids in ascending order


def keyframes(frames: Frames, actions: dict[int, str]) -> list[Keyframe]:
    """Rows -> keyframes: AVA repeats a person's box once per action, so equal boxes of a frame are one person
    whose actions are set in its multi-hot row (proposals, action -1, give boxes with no action)."""
    column = {action: i for i, action in enumerate(sorted(actions))}
    out = []
    for key in sorted(frames):
        video, timestamp = key.rsplit(",", 1)
        people: dict[tuple, np.ndarray] = {}
        for box in frames[key]:
            coords = (round(box.x1, 6), round(box.y1, 6), round(box.x2, 6), round(box.y2, 6))
            row = people.setdefault(coords, np.zeros(len(column), dtype=np.float32))
            if box.action in column:
                row[column[box.action]] = 1.0
        out.append(Keyframe(video, int(timestamp), np.array(list(people), dtype=np.float32).reshape(-1, 4),
                            np.stack(list(people.values())) if people else np.zeros((0, len(column)), np.float32)))
    return out

