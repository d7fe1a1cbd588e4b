import json
import re
import struct

import numpy as np
import pytest
import torch

from dalitrain.engine.checkpoint import CheckpointError
from dalitrain.engine.relations import (load_relations, precision_at_k, random_ranking_precision, read_planted,
                                        top_pairs, run)
from dalitrain.figures import relations_figure

NAMES = ["a", "b"]  # a: 2 classes, b: 3 classes


def planted_table():
    # relations[i][j][x][y] = P(label_j = y | label_i = x), for videos of dataset i
    return {"classes": {"a": ["a0", "a1"], "b": ["b0", "b1", "b2"]},
            "relations": {"a": {"b": [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]},
                          "b": {"a": [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]}}}


def write_run(tmp_path, trained, initial):
    (tmp_path / "relations.json").write_text(json.dumps(planted_table()))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "classes.txt").write_text("b zero\nb one\nb two\n")
    config = {"data": {"base_dir": str(tmp_path), "datasets": [
        {"name": "a", "num_classes": 2, "class_names": None},
        {"name": "b", "num_classes": 3, "class_names": "b/classes.txt"}]}}
    state = {"model": {}, "optimizer": {}, "scheduler": {}, "epoch": 1, "step_in_epoch": 0, "global_step": 10,
             "config": config, "dataset_names": NAMES,
             "projection": {k: torch.tensor(v) for k, v in trained.items()},
             "projection_init": {k: torch.tensor(v) for k, v in initial.items()}}
    path = tmp_path / "step.pt"
    torch.save(state, path)
    return path


# W(src -> dst) has shape [C_dst, C_src]
GOOD = {"0->1": [[0.9, 0.0], [0.0, 0.8], [0.1, 0.7]],  # truth: relations[b][a] -> b0~a0, b1~a1, b2~a1
        "1->0": [[0.9, -0.5, 0.2], [0.0, 0.6, 0.5]]}  # truth: relations[a][b] -> a0~b0, a1~b1, a1~b2
BAD = {"0->1": [[0.0, 0.9], [0.8, 0.0], [0.7, 0.1]], "1->0": [[0.0, 0.6, 0.5], [0.9, 0.0, 0.0]]}


def test_top_pairs_by_hand():
    w = np.array([[0.1, 0.9], [0.5, -1.0], [0.3, 0.2]])  # [C_dst=3, C_src=2]
    assert top_pairs(w, 2) == [(1, 0, 0.9), (0, 1, 0.5)]


def test_precision_by_hand(tmp_path):
    learned = load_relations(write_run(tmp_path, GOOD, BAD))
    planted = read_planted(tmp_path / "relations.json", NAMES)
    # top-3 of 0->1: (a0,b0) (a1,b1) (a1,b2): all planted; of 1->0: (b0,a0) (b1,a1) (b2,a1): all planted
    assert precision_at_k(learned.trained, planted, 3) == 100.0
    # BAD top-3 of 0->1: (a1,b0) (a0,b1) (a0,b2) none; of 1->0: (b0,a1) (b1,a0) (b2,a0) none
    assert precision_at_k(learned.initial, planted, 3) == 0.0
    # top-4 of GOOD 1->0 adds (b2, a0) = 0.2 whose P(b2 | a0) = 0: 3/4; 0->1 adds (a0, b2) = 0.1: 3/4
    assert precision_at_k(learned.trained, planted, 4) == 75.0


def test_random_ranking_precision_by_hand_and_as_the_mean_over_random_projections(tmp_path):
    write_run(tmp_path, GOOD, BAD)
    planted = read_planted(tmp_path / "relations.json", NAMES)
    # 0->1: P(a | b) [[1,0],[0,1],[0,1]] has 3 of 6 entries above 1/2; 1->0: [[1,0,0],[0,.5,.5]] 3 of 6 above 1/3
    assert random_ranking_precision(planted) == 50.0
    rng = np.random.default_rng(0)
    draws = [precision_at_k({pair: rng.standard_normal(truth.shape) for pair, truth in planted.items()}, planted, 2)
             for _ in range(2000)]
    assert np.mean(draws) == pytest.approx(50.0, abs=2.0)


def test_cli_report_and_png(tmp_path, capsys):
    path = write_run(tmp_path, GOOD, BAD)
    png = tmp_path / "rel.png"
    args = type("Args", (), {"checkpoint": str(path), "top": 3, "png": str(png), "relations": None})
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "a -> b:" in out and re.search(r"class 0 +-> b zero +\+0\.900  \(planted\)", out)
    assert "trained 100.0%, untrained 0.0%, a random ranking 50.0% expected" in out
    data = png.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and width > 300 and height > 300


def test_relations_figure_names_every_class_and_pair():
    weights = {(0, 1): np.array([[1.0, -1.0], [0.0, 0.5], [0.0, 0.0]]), (1, 0): np.zeros((2, 3))}
    figure = relations_figure(weights, ["a", "b"], [["a0", "a1"], ["b0", "b1", "b2"]])
    heatmaps = {ax.get_title(): ax for ax in figure.axes if ax.get_images()}
    assert set(heatmaps) == {"a -> b", "b -> a"}
    a_to_b = heatmaps["a -> b"]
    assert [t.get_text() for t in a_to_b.get_xticklabels()] == ["a0", "a1"]  # the source's classes
    assert [t.get_text() for t in a_to_b.get_yticklabels()] == ["b0", "b1", "b2"]  # the destination's
    image = a_to_b.get_images()[0]
    assert image.get_clim() == (-1.0, 1.0)  # symmetric around 0: white means no relation
    np.testing.assert_array_equal(image.get_array(), weights[(0, 1)])
    assert sum(1 for ax in figure.axes if ax.get_label() == "<colorbar>") == 2
    assert any("no self-projection" in t.get_text() for ax in figure.axes for t in ax.texts)


def test_bad_inputs_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_relations(tmp_path / "missing.pt")
    bad = tmp_path / "relations.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=r"relations.json: not a synthetic-corpus relations.json"):
        read_planted(bad, NAMES)
