"""`dalitrain demo` end to end on the synthetic corpus's "tiny" preset, with a budget of seconds."""
import json
import subprocess
import sys
from pathlib import Path


def run_demo(out, *options):
    done = subprocess.run([sys.executable, "-m", "dalitrain.cli", "demo", "--minutes", "0.5", "--preset", "tiny",
                           "--out", str(out), *options], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_demo_writes_the_summary(tmp_path):
    done = run_demo(tmp_path)
    summary_path = tmp_path / "summary.json"
    assert f"summary: {summary_path}" in done.stdout
    summary = json.loads(summary_path.read_text())
    assert set(summary["datasets"]) == {"kinetics_like", "moments_like", "ssv2_like", "activitynet_like"}
    for result in summary["datasets"].values():
        assert 0 <= result["top1"] <= result["top5"] <= 100 and 0 < result["chance"] < 100
        assert result["videos"] == result["expected"] > 0
    assert summary["clips_per_s"] > 0
    assert 0 <= summary["random_relations_precision_at_5"] <= 100
    assert 0 < summary["random_ranking_precision"] < 100
    assert 0 <= summary["relations_precision_at_5"] <= 100
    assert (tmp_path / "relations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["checkpoint"].endswith(".pt")
    assert summary["recipe"] == "multitrain" and summary["model"] == "mvitv2_tiny"
    best = summary["best"]  # the evaluation stored in best.pt: the highest mean top-1 of the run's evaluations
    assert set(best["top1"]) == set(summary["datasets"]) and best["epoch"] >= 1
    assert sum(best["top1"].values()) >= sum(r["top1"] for r in summary["datasets"].values()) - 1e-9


def test_cofinetune_demo_trains_vivit_and_reports_no_relations(tmp_path):
    run_demo(tmp_path, "--recipe", "cofinetune")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["recipe"] == "cofinetune" and summary["model"] == "vivit_fe_tiny"
    assert set(summary["datasets"]) == {"kinetics_like", "moments_like", "ssv2_like", "activitynet_like"}
    assert all(r["videos"] == r["expected"] > 0 for r in summary["datasets"].values())
    assert "relations_precision_at_5" not in summary and not (tmp_path / "relations.png").exists()


def test_sfa_demo_runs_both_stages_and_reports_them(tmp_path):
    run_demo(tmp_path, "--recipe", "sfa")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["recipe"] == "sfa" and summary["model"] == "vivit_fe_tiny"
    assert [s["stage"] for s in summary["stages"]] == ["stage1_8f", "stage2_16f"]
    assert all(s["minutes"] > 0 and s["steps"] > 0 for s in summary["stages"])
    stage2 = tmp_path / "run-sfa" / "stage2_16f"
    assert summary["checkpoint"].startswith(str(stage2)) and (stage2 / "stage.json").is_file()
    assert all(r["videos"] == r["expected"] > 0 for r in summary["datasets"].values())


def test_ava_demo_reports_frame_map_with_both_box_sources_and_the_official_files(tmp_path):
    done = run_demo(tmp_path, "--recipe", "ava", "--preset", "ava_tiny")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["recipe"] == "ava" and "frame-mAP@0.5 of the best checkpoint" in done.stdout
    for key in ("frame_map", "frame_map_gt_boxes", "chance_map"):
        assert 0.0 <= summary[key] <= 1.0
    assert set(summary["frame_map_split"]) == {"head", "mid", "tail"}
    for key in ("groundtruth_csv", "detections_csv", "labelmap", "excluded_csv"):
        assert Path(summary[key]).is_file(), key
    rows = Path(summary["detections_csv"]).read_text().splitlines()
    assert rows and all(len(row.split(",")) == 8 for row in rows)  # the official CSV: one row per box and action
    result = summary["datasets"]["ava_like"]
    assert result["videos"] == result["expected"] > 0


def test_a_preset_of_the_other_task_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dalitrain.cli", "demo", "--recipe", "ava", "--preset", "tiny",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "dalitrain demo: error: --preset tiny: the ava recipe takes an AVA preset"
    assert not (tmp_path / "corpus-tiny").exists()  # refused before generating anything
