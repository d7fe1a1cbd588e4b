"""The AVA files: label map, annotations, detections, proposals, exclusions; bad rows by file and line."""
import re

import numpy as np
import pytest

from dalitrain.data.ava import (Box, keyframes, label_proposals, read_boxes, read_exclusions, read_labelmap,
                                read_proposals, write_detections)
from dalitrain.data.sampling import ClipRecipe, keyframe_indices
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


def test_an_unknown_video_is_a_bad_row(tmp_path):
    (tmp_path / "gt.csv").write_text("known,0902,0.1,0.1,0.5,0.9,1\nother,0902,0.1,0.1,0.5,0.9,1\n")
    with pytest.raises(InputError, match=r"gt.csv:2: video 'other' is not in the dataset"):
        read_boxes(tmp_path / "gt.csv", set(ACTIONS), scored=False, videos={"known"})
    assert list(read_boxes(tmp_path / "gt.csv", set(ACTIONS), scored=False, videos={"known"}, bad_rows="skip")) == [
        "known,0902"]


def test_proposals_keep_the_boxes_at_or_above_the_threshold(tmp_path):
    rows = ["v,0902,0.1,0.1,0.5,0.9,,0.95", "v,0902,0.5,0.1,0.9,0.9,,0.8", "v,0902,0.2,0.2,0.3,0.3,,0.3",
            "v,0903,0.1,0.1,0.5,0.9,0.1"]  # 7 columns: no action column
    (tmp_path / "proposals.csv").write_text("\n".join(rows) + "\n")
    train = read_proposals(tmp_path / "proposals.csv", threshold=0.8)
    assert {key: [b.score for b in boxes] for key, boxes in train.items()} == {"v,0902": [0.95, 0.8]}
    evaluation = read_proposals(tmp_path / "proposals.csv", threshold=0.2)
    assert [b.score for b in evaluation["v,0902"]] == [0.95, 0.8, 0.3] and "v,0903" not in evaluation
    assert all(b.action == -1 for b in evaluation["v,0902"])


def test_rows_of_one_person_become_one_multi_hot_box():
    frames = {"v,0902": [box(1, 0.1, 0.1, 0.5, 0.9), box(3, 0.1, 0.1, 0.5, 0.9), box(3, 0.6, 0.2, 0.9, 0.8)],
              "v,0903": [box(-1, 0.2, 0.2, 0.4, 0.4, 0.9)]}  # a proposal: no action
    first, second = keyframes(frames, ACTIONS)
    assert (first.video, first.timestamp, second.timestamp) == ("v", 902, 903)
    np.testing.assert_allclose(first.boxes, [[0.1, 0.1, 0.5, 0.9], [0.6, 0.2, 0.9, 0.8]], rtol=1e-6)
    np.testing.assert_array_equal(first.labels, [[1, 1], [0, 1]])  # columns: actions 1 and 3
    np.testing.assert_array_equal(second.labels, [[0, 0]])


def test_keyframe_clips_are_centred_and_clamped():
    # keyframe at 2 s of a 10 fps video: frame 20; 4 frames at stride 2 -> 16, 18, 20, 22
    recipe = ClipRecipe(num_frames=4, stride=2)
    assert keyframe_indices(100, recipe, 20).tolist() == [16, 18, 20, 22]
    assert keyframe_indices(100, recipe, 0).tolist() == [0, 0, 0, 2]  # before the start: the first frame
    assert keyframe_indices(100, recipe, 99).tolist() == [95, 97, 99, 99]  # past the end: the last


def test_training_proposals_take_the_actions_of_the_person_they_overlap():
    truth = {"v,0001": [box(1, 0.1, 0.1, 0.5, 0.9), box(3, 0.1, 0.1, 0.5, 0.9), box(3, 0.6, 0.1, 0.9, 0.9)],
             "v,0002": [box(1, 0.1, 0.1, 0.5, 0.5)]}
    proposals = {"v,0001": [box(-1, 0.12, 0.1, 0.5, 0.88, 0.95),  # IoU 0.9 with the first person: actions 1 and 3
                            box(-1, 0.5, 0.1, 0.95, 0.9, 0.9),  # IoU 0.24 / 0.36 with the second person: 3
                            box(-1, 0.0, 0.0, 0.1, 0.1, 0.85)],  # nobody: a negative
                 "v,0009": [box(-1, 0.1, 0.1, 0.5, 0.5, 0.9)]}  # a keyframe without annotations: left out
    labelled = label_proposals(truth, proposals)
    assert set(labelled) == {"v,0001", "v,0002"} and labelled["v,0002"] == []
    rows = [(b.action, b.x1) for b in labelled["v,0001"]]
    assert rows == [(1, 0.12), (3, 0.12), (3, 0.5), (-1, 0.0)]
    (first,) = [k for k in keyframes(labelled, ACTIONS) if k.timestamp == 1]
    np.testing.assert_array_equal(first.labels, [[1, 1], [0, 1], [0, 0]])
