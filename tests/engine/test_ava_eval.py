"""AVA frame-mAP on hand-computed cases."""
import numpy as np
import pytest

from dalitrain.data.ava import Box
from dalitrain.engine.ava_eval import average_precision, frame_map

ACTIONS = {1: "walk", 3: "talk"}


def box(action, x1, y1, x2, y2, score=1.0):
    return Box(score, action, y1, x1, y2, x2)


def test_a_perfect_detector_gets_ap_one():
    truth = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9), box(3, 0.1, 0.1, 0.5, 0.9)], "v,0903": [box(1, 0.5, 0.2, 0.9, 0.8)]}
    result = frame_map(truth, truth, ACTIONS)
    assert result["ap"] == {1: 1.0, 3: 1.0} and result["map"] == 1.0


def test_two_detections_of_one_box_are_one_hit_and_one_false_positive():
    truth = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9)]}
    # the better-scored one overlaps fully: a hit, then the duplicate: a false positive -> AP 1
    first = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9, 0.9), box(1, 0.12, 0.1, 0.5, 0.9, 0.8)]}
    assert frame_map(truth, first, ACTIONS)["ap"][1] == 1.0
    # a wrong box scored higher: precision 1/2 at recall 1 -> AP 0.5
    second = {"v,0902": [box(1, 0.6, 0.1, 0.9, 0.9, 0.9), box(1, 0.1, 0.1, 0.5, 0.9, 0.8)]}
    assert frame_map(truth, second, ACTIONS)["ap"][1] == 0.5


def test_a_taken_best_box_is_not_replaced_by_the_next_best():
    """VOC: a detection whose best-overlapping box is already taken is a false positive, even if another box of the
    class overlaps it by 0.5 or more."""
    truth = {"v,0001": [box(1, 0.0, 0.0, 0.4, 1.0), box(1, 0.1, 0.0, 0.5, 1.0)]}  # IoU between them 0.6
    found = {"v,0001": [box(1, 0.0, 0.0, 0.4, 1.0, 0.9), box(1, 0.02, 0.0, 0.42, 1.0, 0.8)]}
    hits = frame_map(truth, found, ACTIONS)
    # second detection: IoU 0.91 with the taken first box, 0.67 with the free second: still a false positive;
    # precision 1, 1/2 at recall 1/2, 1/2 -> AP 0.5
    assert hits["ap"][1] == pytest.approx(0.5)


def test_excluded_frames_are_ignored_and_classes_without_truth_left_out():
    truth = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9)], "v,0905": [box(3, 0.1, 0.1, 0.5, 0.9)]}
    found = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9, 0.5)], "v,0904": [box(1, 0.1, 0.1, 0.5, 0.9, 0.99)],
             "v,0905": [box(3, 0.6, 0.1, 0.9, 0.9, 0.7)]}
    result = frame_map(truth, found, ACTIONS, excluded={"v,0904", "v,0905"})
    assert result["ap"] == {1: 1.0, 3: None} and result["map"] == 1.0  # 0904's false positive and 0905 dropped
    assert frame_map(truth, found, ACTIONS)["ap"][1] == 0.5


def test_average_precision_by_hand():
    # ranked: hit, miss, hit, miss with 3 positives: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1.0, 0.0, 1.0, 0.0]), 3)
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)


def test_only_fifty_detections_per_frame_count():
    truth = {"v,0001": [box(1, 0.0, 0.0, 0.5, 0.5)]}
    decoys = [box(1, 0.6, 0.6, 0.9, 0.9, 0.9) for _ in range(50)]
    found = {"v,0001": decoys + [box(1, 0.0, 0.0, 0.5, 0.5, 0.1)]}  # the hit is the 51st
    assert frame_map(truth, found, ACTIONS)["ap"][1] == 0.0


def test_head_mid_tail_split_by_training_instances():
    from dalitrain.engine.ava_eval import frequency_split
    ap = {1: 0.9, 2: 0.5, 3: 0.3, 4: 0.1, 5: None}
    counts = {1: 20_000, 2: 10_000, 3: 999, 4: 5, 5: 50_000}  # 10,000 is not above the head's bound: mid
    assert frequency_split(ap, counts) == {"head": 0.9, "mid": 0.5, "tail": pytest.approx(0.2)}
    assert frequency_split({1: 0.4}, {1: 5}) == {"head": None, "mid": None, "tail": 0.4}
