"""The synthetic AVA dataset: real formats that dalitrain.data.ava reads, boxes on the actors, long-tailed actions."""
import json

import av
import numpy as np

from dalitrain.data.ava import read_boxes, read_exclusions, read_labelmap, read_proposals
from dalitrain.data.synth_ava import ACTIONS, generate_ava


def test_files_read_back_and_boxes_sit_on_the_actors(tmp_path):
    summary = generate_ava(tmp_path, "ava_tiny", seed=0)
    notes = tmp_path / "annotations"
    actions = read_labelmap(notes / "labelmap.pbtxt")
    assert actions == ACTIONS
    videos = {p.stem for p in (tmp_path / "videos").glob("*.webm")}
    train = read_boxes(notes / "train.csv", set(actions), scored=False, videos=videos)
    val = read_boxes(notes / "val.csv", set(actions), scored=False, videos=videos)
    assert train and val and not set(train) & set(val)
    counted = {name: sum(b.action == a for boxes in train.values() for b in boxes) for a, name in actions.items()}
    assert counted == summary["train_counts"] == json.loads((tmp_path / "corpus.json").read_text())["train_counts"]
    assert read_exclusions(notes / "excluded.csv") <= set(val)
    proposals = read_proposals(notes / "proposals_val.csv", threshold=0.2, videos=videos)
    assert set(proposals) == set(val)  # every annotated keyframe has proposals
    for key, boxes in list(train.items())[:4]:  # the keyframe's pixels: an actor inside each box
        video, second = key.split(",")
        with av.open(str(tmp_path / "videos" / f"{video}.webm")) as container:
            frame = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][int(second) * summary["fps"]]
        height, width = frame.shape[:2]
        corner = frame[0, 0].astype(float)
        for box in boxes:
            inside = frame[int(box.y1 * height):int(np.ceil(box.y2 * height)),
                           int(box.x1 * width):int(np.ceil(box.x2 * width))].astype(float)
            assert np.abs(inside - corner).max() > 40  # a saturated actor colour, not the muted background


def test_rates_make_head_and_tail_actions_and_the_corpus_is_kept(tmp_path):
    summary = generate_ava(tmp_path, "ava_tiny", seed=1)
    assert summary["train_counts"]["move"] > summary["train_counts"]["grow"]
    before = (tmp_path / "annotations" / "train.csv").stat().st_mtime_ns
    assert generate_ava(tmp_path, "ava_tiny", seed=1) == summary  # complete: kept, not regenerated
    assert (tmp_path / "annotations" / "train.csv").stat().st_mtime_ns == before


def test_synth_command_makes_the_ava_preset(tmp_path, capsys):
    from dalitrain.cli import main
    assert main(["synth", "--out", str(tmp_path), "--preset", "ava_tiny"]) == 0
    assert "AVA-format dataset in" in capsys.readouterr().out
    assert (tmp_path / "annotations" / "labelmap.pbtxt").is_file()
