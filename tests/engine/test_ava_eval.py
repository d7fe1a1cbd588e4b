"""AVA frame-mAP on hand-computed cases, and the files' bad rows named by file and line."""
import re

import numpy as np
import pytest

from dalitrain.engine.ava_eval import (Box, average_precision, frame_map, read_boxes, read_exclusions, read_labelmap,
                                       write_detections)
from dalitrain.errors import InputError

LABELMAP = 'item {\n  name: "walk"\n  id: 1\n}\nitem {\n  name: "talk"\n  label_id: 3\n}\n'
ACTIONS = {1: "walk", 3: "talk"}


def box(action, x1, y1, x2, y2, score=1.0):
    return Box(score, action, y1, x1, y2, x2)


def test_labelmap_reads_id_and_label_id(tmp_path):
    (tmp_path / "map.pbtxt").write_text(LABELMAP)
    assert read_labelmap(tmp_path / "map.pbtxt") == ACTIONS
    (tmp_path / "bad.pbtxt").write_text("nothing here\n")
    with pytest.raises(InputError, match="bad.pbtxt: no `id:` entries"):
        read_labelmap(tmp_path / "bad.pbtxt")


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


def test_bad_rows_are_refused_or_skipped_with_file_and_line(tmp_path, capsys):
    rows = ["v,0902,0.1,0.1,0.5,0.9,1,7", "v,0902,0.1,0.1,1.5,0.9,1,7", "v,0902,0.5,0.1,0.4,0.9,1,7",
            "v,0902,0.1,0.1,0.5,0.9,2,7", "v,0902,0.1,0.1,0.5"]
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")
    for line, reason in ((2, "outside [0, 1]"), (3, "empty box"), (4, "action id 2 not in the label map"),
                         (5, "5 columns")):
        (tmp_path / "one.csv").write_text(rows[0] + "\n" + rows[line - 1] + "\n")
        with pytest.raises(InputError, match=f"one.csv:2: .*{re.escape(reason)}"):
            read_boxes(tmp_path / "one.csv", set(ACTIONS), scored=False)
    frames = read_boxes(tmp_path / "gt.csv", set(ACTIONS), scored=False, bad_rows="skip")
    assert len(frames["v,0902"]) == 1
    warnings = capsys.readouterr().err.splitlines()
    assert [re.search(r"gt.csv:(\d+): .*; row skipped$", w).group(1) for w in warnings] == ["2", "3", "4", "5"]
    (tmp_path / "ex.csv").write_text("v,0902\nv\n")
    with pytest.raises(InputError, match="ex.csv:2: expected video_id,timestamp"):
        read_exclusions(tmp_path / "ex.csv")


def test_detections_written_in_the_official_format_read_back(tmp_path):
    path = write_detections(tmp_path / "det.csv", [("vid", 902, 0.1, 0.2, 0.5, 0.9, 3, 0.75)])
    assert path.read_text() == "vid,0902,0.100000,0.200000,0.500000,0.900000,3,0.750000\n"
    assert read_boxes(path, set(ACTIONS), scored=True) == {"vid,0902": [box(3, 0.1, 0.2, 0.5, 0.9, 0.75)]}
