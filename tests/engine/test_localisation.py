"""Scoring a localisation dataset: box scores -> detection rows -> frame-mAP, the official CSV, chance and split;
the CSV re-evaluated by an independent implementation of the AVA metric gives the same mAP."""
import csv

import numpy as np
import pytest
import torch

from dalitrain.data.ava import Box
from dalitrain.data.batch import Batch
from dalitrain.engine.localisation import LocalisationTarget, localisation_scores, scored_boxes

ACTIONS = {1: "move", 4: "wave"}


def truth_and_target(tmp_path):
    """Three keyframes with person boxes; keyframe 2 is excluded."""
    people = {("v0", 1): [((0.1, 0.1, 0.4, 0.5), {1}), ((0.5, 0.2, 0.9, 0.9), {1, 4})],
              ("v0", 2): [((0.2, 0.2, 0.6, 0.6), {4})],
              ("v1", 3): [((0.0, 0.0, 0.5, 0.5), {1}), ((0.6, 0.6, 1.0, 1.0), set())]}
    groundtruth = {f"{v},{ts:04d}": [Box(1.0, a, y1, x1, y2, x2) for (x1, y1, x2, y2), acts in boxes for a in acts]
                   for (v, ts), boxes in people.items()}
    target = LocalisationTarget(0, "ava", ACTIONS, list(people), groundtruth, {"v0,0002"}, {1: 500, 4: 20},
                                (100, 50), {}, tmp_path / "detections.csv")
    return people, target


def scored_rows(people, scores_of):
    return [(index, np.array(box, np.float32), scores_of(acts))
            for index, boxes in enumerate(people.values()) for box, acts in boxes]


def test_a_perfect_detector_scores_one_and_random_scores_less(tmp_path):
    people, target = truth_and_target(tmp_path)
    found = localisation_scores(target, scored_rows(people, lambda acts: np.array([1 in acts, 4 in acts], float)),
                                write=True)
    assert found["frame_map"] == pytest.approx(1.0)
    assert found["chance_map"] < 1.0
    assert found["frame_map_split"] == {"head": pytest.approx(1.0), "mid": None, "tail": pytest.approx(1.0)}
    rows = list(csv.reader(open(found["detections_csv"])))
    assert len(rows) == 5 * len(ACTIONS)  # one row per (box, action), the official format's 8 columns
    assert rows[0][:2] == ["v0", "0001"] and len(rows[0]) == 8


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def independent_map(truth_rows, detection_rows, excluded):
    """PASCAL VOC frame-AP from the CSV rows alone, written apart from dalitrain.engine.ava_eval."""
    aps = []
    for action in sorted({int(r[6]) for r in truth_rows}):
        gt = {}
        for r in truth_rows:
            if int(r[6]) == action and (r[0], int(r[1])) not in excluded:
                gt.setdefault((r[0], int(r[1])), []).append([float(v) for v in r[2:6]])
        positives = sum(len(v) for v in gt.values())
        if positives == 0:
            continue
        dets = sorted(((float(r[7]), (r[0], int(r[1])), [float(v) for v in r[2:6]]) for r in detection_rows
                       if int(r[6]) == action and (r[0], int(r[1])) not in excluded), key=lambda d: -d[0])
        used = {key: [False] * len(boxes) for key, boxes in gt.items()}
        hits = []
        for _, key, box in dets:
            overlaps = [iou(box, g) for g in gt.get(key, [])]
            best = int(np.argmax(overlaps)) if overlaps else None
            hit = best is not None and overlaps[best] >= 0.5 and not used[key][best]
            if hit:
                used[key][best] = True
            hits.append(hit)
        tp = np.cumsum(hits)
        recall, precision = tp / positives, tp / np.arange(1, len(hits) + 1)
        ap, previous = 0.0, 0.0
        for i in range(len(hits)):  # area under the curve of the best precision at any recall >= this one
            if recall[i] > previous:
                ap += (recall[i] - previous) * precision[i:].max()
                previous = recall[i]
        aps.append(ap)
    return float(np.mean(aps))


def test_the_written_csv_evaluated_independently_gives_the_printed_map(tmp_path):
    people, target = truth_and_target(tmp_path)
    rng = np.random.default_rng(0)
    jittered = [(i, box + rng.uniform(-0.08, 0.08, 4).astype(np.float32), rng.random(2))
                for i, box, _ in scored_rows(people, lambda acts: None)]
    found = localisation_scores(target, jittered, write=True)
    truth_rows = [(k.split(",")[0], k.split(",")[1], b.x1, b.y1, b.x2, b.y2, b.action)
                  for k, boxes in target.groundtruth.items() for b in boxes]
    detections = list(csv.reader(open(found["detections_csv"])))
    assert 0.0 < found["frame_map"] < 1.0
    assert independent_map(truth_rows, detections, {("v0", 2)}) == pytest.approx(found["frame_map"], abs=1e-4)


def test_scored_boxes_keep_the_valid_localisation_clips_only():
    boxes = torch.tensor([[0, 0.1, 0.1, 0.5, 0.5], [1, 0.2, 0.2, 0.6, 0.6], [2, 0.3, 0.3, 0.7, 0.7]])
    batch = Batch(torch.zeros(3, 3, 1, 2, 2), torch.zeros(3, dtype=torch.long), torch.tensor([1, 0, 1]),
                  torch.tensor([7, 8, 9]), torch.tensor([True, True, False]), boxes, torch.zeros(3, 2))
    rows = scored_boxes(batch, torch.zeros(3, 2), dataset=1)
    assert [index for index, _, _ in rows] == [7]  # clip 1 is another dataset's, clip 2 is padding
    np.testing.assert_allclose(rows[0][1], [0.1, 0.1, 0.5, 0.5])
    np.testing.assert_allclose(rows[0][2], [0.5, 0.5])
