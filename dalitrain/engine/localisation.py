"""Frame-mAP of a run's localisation dataset (AVA's files), the score evaluation gives that dataset.

The evaluation loader gives each validation keyframe once, as the whole frame (no box is cut off), with the
ground-truth boxes or the person proposals (`eval_boxes`); the box head scores every box for every action, and
each (box, action, sigmoid score) becomes one detection row in the official CSV format, so that a user can run the
official evaluation on `detections_csv`. Box coordinates are the clip's, which for the whole, unflipped frame are
the frame's. The metric is `dalitrain.engine.ava_eval.frame_map` against the validation annotations, excluded
timestamps honoured; `chance_map` is the mean over a few draws of the mAP of the same boxes with random scores;
the head / mid / tail split is by training instances per action (`frequency_split` thresholds).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dalitrain.config import DataConfig, DatasetConfig, resolve_path
from dalitrain.data.ava import Box, Frames, frame_key, read_boxes, read_exclusions, read_labelmap, write_detections
from dalitrain.data.batch import Batch
from dalitrain.data.records import localisation_records
from dalitrain.engine.ava_eval import frame_map, frequency_split

CHANCE_DRAWS = 5


@dataclass
class LocalisationTarget:
    """What scoring a localisation dataset needs beside the model's box scores."""

    dataset: int  # its index in data.datasets
    name: str
    actions: dict[int, str]  # label map: the score columns are its ids in ascending order
    keys: list[tuple[str, int]]  # keyframe `index` of the eval batches -> (video id, timestamp)
    groundtruth: Frames
    excluded: set[str]
    train_counts: dict[int, int]  # training rows per action
    split: tuple[int, int]  # head above, tail below (training instances)
    paths: dict[str, Optional[str]]  # `official_files`
    detections_csv: Optional[Path] = None  # where evaluation writes the detections (None: not written)


def localisation_target(data: DataConfig, output_dir: Optional[str | Path]) -> Optional[LocalisationTarget]:
    """The run's localisation dataset ready for scoring; None when the run has none."""
    found = [(k, d) for k, d in enumerate(data.datasets) if d.task == "localisation" and d.val_manifest]
    if not found:
        return None
    k, ds = found[0]
    paths = official_files(data, ds)
    actions = read_labelmap(paths["labelmap"])
    groundtruth = read_boxes(paths["groundtruth_csv"], set(actions), scored=False, bad_rows=ds.bad_rows)
    train = read_boxes(resolve_path(data.base_dir, ds.manifest), set(actions), scored=False, bad_rows=ds.bad_rows)
    counts = Counter(box.action for boxes in train.values() for box in boxes)
    records, _ = localisation_records(data, ds, "val")
    keys = [(b.video_id, b.timestamp) for b in records.boxes]
    return LocalisationTarget(k, ds.name, actions, keys, groundtruth, read_exclusions(paths["excluded_csv"]),
                              {a: counts.get(a, 0) for a in actions}, tuple(ds.frequency_split), paths,
                              Path(output_dir) / f"detections_{ds.name}.csv" if output_dir else None)


def official_files(data: DataConfig, ds: DatasetConfig) -> dict[str, Optional[str]]:
    """The files the official AVA evaluation reads beside the detections: groundtruth_csv, labelmap, excluded_csv."""
    return {"groundtruth_csv": str(resolve_path(data.base_dir, ds.val_manifest)),
            "labelmap": str(resolve_path(data.base_dir, ds.labelmap)),
            "excluded_csv": str(resolve_path(data.base_dir, ds.excluded)) if ds.excluded else None}


Scored = list[tuple[int, np.ndarray, np.ndarray]]  # (keyframe index, box [4] x1 y1 x2 y2, action scores [A])


def scored_boxes(batch: Batch, box_logits: torch.Tensor, dataset: int) -> Scored:
    """The valid localisation clips' boxes of one eval batch with their sigmoid scores."""
    if batch.boxes is None or box_logits is None or batch.boxes.shape[0] == 0:
        return []
    clip = batch.boxes[:, 0].long()
    keep = ((batch.dataset[clip] == dataset) & batch.valid[clip]).cpu()
    index = batch.index[clip].cpu()[keep].tolist()
    boxes = batch.boxes[:, 1:].float().cpu()[keep].numpy()
    scores = torch.sigmoid(box_logits.float()).cpu()[keep].numpy()
    return list(zip(index, boxes, scores))


def detection_rows(target: LocalisationTarget, scored: Scored) -> list[tuple]:
    """(video id, timestamp, x1, y1, x2, y2, action id, score) per box and action: the official CSV's rows."""
    ids = sorted(target.actions)
    rows = []
    for index, (x1, y1, x2, y2), scores in scored:
        video, timestamp = target.keys[index]
        rows += [(video, timestamp, float(x1), float(y1), float(x2), float(y2), action, float(score))
                 for action, score in zip(ids, scores)]
    return rows


def detections_by_frame(rows: list[tuple]) -> Frames:
    frames: dict[str, list[Box]] = {}
    for video, timestamp, x1, y1, x2, y2, action, score in rows:
        frames.setdefault(frame_key(video, timestamp), []).append(Box(score, action, y1, x1, y2, x2))
    for boxes in frames.values():
        boxes.sort(key=lambda b: -b.score)
    return frames


def localisation_scores(target: LocalisationTarget, scored: Scored, write: bool) -> dict:
    """frame_map, ap per action, chance_map, frame_map_split and, when `write`, the detections CSV's path."""
    rows = detection_rows(target, scored)
    result = frame_map(target.groundtruth, detections_by_frame(rows), target.actions, target.excluded)
    rng = np.random.default_rng(0)
    chance = [frame_map(target.groundtruth, detections_by_frame([(*r[:7], float(rng.random())) for r in rows]),
                        target.actions, target.excluded)["map"] for _ in range(CHANCE_DRAWS)]
    out = {"frame_map": result["map"], "ap": result["ap"], "chance_map": float(np.mean(chance)),
           "frame_map_split": frequency_split(result["ap"], target.train_counts, *target.split),
           "keyframes": len({index for index, _, _ in scored}),
           "predicted_actions": len({int(np.argmax(s)) for _, _, s in scored})}
    if write and target.detections_csv is not None:
        out["detections_csv"] = str(write_detections(target.detections_csv, rows))
    return out
