"""Multi-view evaluation: per-dataset top-1/top-5 on the original heads, softmax averaged over a video's views.

Every view (temporal clip x spatial crop) of a video carries the same (dataset, index); the softmax of that
dataset's head is summed per video (averaging and summing have the same top-k), then ranked. The projected
logits are a training signal only, so evaluation scores the original heads, as the paper does. Rows marked
invalid (padding that makes the last batch full) are ignored. Under data parallelism the per-video sums are
merged across ranks, so a video whose views landed on different ranks is still counted once.

A localisation dataset is scored by frame-mAP instead (dalitrain.engine.localisation): its `top1` and `top5` hold
the frame-mAP in percent, so that the best checkpoint is chosen on it as on the others' top-1.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sized

import torch
from torch import nn

from dalitrain.data.batch import Batch
from dalitrain.engine.distributed import gather_objects, is_main_process
from dalitrain.engine.localisation import LocalisationTarget, localisation_scores, scored_boxes
from dalitrain.engine.numerics import warm_up_mkl_vml
from dalitrain.progress import progress


@dataclass
class DatasetAccuracy:
    name: str
    top1: float  # percent
    top5: float  # percent (top-k with k = min(5, classes))
    chance_top1: float
    chance_top5: float
    videos: int  # videos evaluated
    expected: int  # videos in the validation manifest
    predicted_classes: int  # distinct top-1 classes over the videos: 1 means the model predicts a constant
    # localisation only: frame-mAP (a fraction), the mAP of random scores, head / mid / tail mAP, the CSV written
    frame_map: Optional[float] = None
    chance_map: Optional[float] = None
    frame_map_split: Optional[dict] = None
    detections_csv: Optional[str] = None


VideoScores = dict[tuple[int, int], tuple[torch.Tensor, int]]  # (dataset, index) -> (softmax sum, label)


def _accumulate(scores: VideoScores, batch: Batch, logits: list[Optional[torch.Tensor]]) -> None:
    for k in torch.unique(batch.dataset[batch.valid]).tolist():
        if logits[k] is None:  # the localisation dataset: scored per box
            continue
        rows = (batch.dataset == k) & batch.valid
        probs = torch.softmax(logits[k][rows].float(), dim=-1).cpu()
        for index, label, prob in zip(batch.index[rows].tolist(), batch.label[rows].tolist(), probs):
            key = (k, index)
            scores[key] = (scores[key][0] + prob, label) if key in scores else (prob, label)


def _merge(per_rank: list[VideoScores]) -> VideoScores:
    merged: VideoScores = {}
    for scores in per_rank:
        for key, (prob, label) in scores.items():
            merged[key] = (merged[key][0] + prob, label) if key in merged else (prob, label)
    return merged


def _topk_percent(scores: VideoScores, dataset: int, k: int) -> tuple[float, int]:
    hits = [label in prob.topk(min(k, prob.numel())).indices.tolist()
            for (d, _), (prob, label) in scores.items() if d == dataset]
    return (100.0 * sum(hits) / len(hits) if hits else 0.0), len(hits)


def _predicted_classes(scores: VideoScores, dataset: int) -> int:
    return len({int(prob.argmax()) for (d, _), (prob, _) in scores.items() if d == dataset})


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], *, dataset_names: list[str], num_classes: list[int],
             expected: list[int], device: torch.device, autocast: Callable[[], AbstractContextManager],
             localisation: Optional[LocalisationTarget] = None) -> list[DatasetAccuracy]:
    warm_up_mkl_vml()  # an evaluation run alone (dalitrain eval) has no Trainer to do it: see numerics.py
    was_training = model.training
    model.eval()
    scores: VideoScores = {}
    boxes = []
    batches = progress(loader, total=len(loader) if isinstance(loader, Sized) else None, desc="evaluate",
                       unit="batch") if is_main_process() else loader
    for batch in batches:
        batch = batch.to(device)
        with autocast():
            out = model(batch.video) if batch.boxes is None else model(batch.video, batch.boxes)
        _accumulate(scores, batch, out.logits)
        if localisation is not None:
            boxes += scored_boxes(batch, out.box_logits, localisation.dataset)
    model.train(was_training)
    scores = _merge(gather_objects(scores))
    results = []
    if localisation is not None:
        boxes = [row for rows in gather_objects(boxes) for row in rows]
    for k, name in enumerate(dataset_names):
        if localisation is not None and k == localisation.dataset:
            results.append(_localisation_result(localisation, boxes, expected[k]))
            continue
        top1, videos = _topk_percent(scores, k, 1)
        top5, _ = _topk_percent(scores, k, 5)
        classes = num_classes[k]
        results.append(DatasetAccuracy(name, top1, top5, 100.0 / classes, 100.0 * min(5, classes) / classes,
                                       videos, expected[k], _predicted_classes(scores, k)))
    return results


def _localisation_result(target: LocalisationTarget, boxes: list, expected: int) -> DatasetAccuracy:
    found = localisation_scores(target, boxes, write=is_main_process())
    percent = 100.0 * found["frame_map"]
    return DatasetAccuracy(target.name, percent, percent, 100.0 * found["chance_map"], 100.0 * found["chance_map"],
                           found["keyframes"], expected, found["predicted_actions"], found["frame_map"],
                           found["chance_map"], found["frame_map_split"], found.get("detections_csv"))
