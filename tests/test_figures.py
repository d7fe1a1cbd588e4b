"""`dalitrain plot`: training curves from metrics.jsonl, one run or a curriculum's stages; the benchmarks' bars."""
import json
import os

import pytest

from dalitrain.cli import main
from dalitrain.errors import InputError
from dalitrain.figures import bar_chart, read_metrics, training_figure


def write_metrics(folder, steps, top1, loss_terms=("ce", "loss")):
    folder.mkdir(parents=True)
    records = [{"kind": "train", "epoch": 1, "step": s, "lr": 1e-4 * s, "clips_per_s": 10.0 + s, "data_wait": 0.1,
                **{t: 2.0 / s for t in loss_terms}} for s in steps]
    records.append({"kind": "eval", "epoch": 1, "step": steps[-1], "ds_a/top1": top1, "ds_b/top1": top1 / 2})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (folder / "config.yaml").write_text("{}\n")


def test_plot_draws_every_panel_of_one_run(tmp_path, capsys):
    write_metrics(tmp_path / "run", [10, 20, 30], 40.0)
    assert main(["plot", str(tmp_path / "run")]) == 0
    png = tmp_path / "run" / "training.png"
    assert f"training curves: {png}" in capsys.readouterr().out and png.read_bytes()[:4] == b"\x89PNG"
    figure = training_figure(read_metrics(tmp_path / "run"), title="t")
    titles = {ax.get_title(): ax for ax in figure.axes}
    assert {line.get_label() for line in titles["loss terms (mean since the previous log line)"].lines} == {"ce", "loss"}
    top1 = titles["validation top-1 at each evaluation"]
    assert {line.get_label(): list(line.get_ydata()) for line in top1.lines} == {"ds_a": [40.0], "ds_b": [20.0]}
    assert list(titles["learning rate"].lines[0].get_xdata()) == [10, 20, 30]


def test_a_curriculum_is_one_time_line_with_its_stages_marked(tmp_path):
    write_metrics(tmp_path / "sfa" / "stage1", [5, 10], 30.0)
    write_metrics(tmp_path / "sfa" / "stage2", [5, 10], 50.0, loss_terms=("ce",))
    first = tmp_path / "sfa" / "stage1" / "config.yaml"
    os.utime(first, (first.stat().st_mtime - 60, first.stat().st_mtime - 60))  # stage 1 started first
    records = read_metrics(tmp_path / "sfa")
    assert [(r["stage"], r["run_step"]) for r in records if r["kind"] == "train"] == [
        ("stage1", 5), ("stage1", 10), ("stage2", 15), ("stage2", 20)]
    figure = training_figure(records, title="sfa")
    top1 = next(ax for ax in figure.axes if ax.get_title().startswith("validation"))
    assert [list(line.get_xdata()) for line in top1.lines if line.get_label() == "ds_a"] == [[10, 20]]
    assert any(t.get_text().strip() == "stage2" for t in top1.texts)


def test_plot_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(InputError, match="no metrics.jsonl here or in a stage folder"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match=r"metrics.jsonl:1: not a JSON record"):
        read_metrics(tmp_path)


def test_bar_chart_labels_values_and_reference_lines():
    figure = bar_chart(["a", "b"], {"speed": [1.5, 3.0], "memory": [0.5, 0.25]}, title="ratios", ylabel="x",
                       lines={"baseline": 1.0})
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [p.get_height() for p in ax.patches] == [1.5, 3.0, 0.5, 0.25]
    assert [t.get_text() for t in ax.texts] == ["1.50", "3.00", "0.50", "0.25"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline: 1.00", "speed", "memory"]
