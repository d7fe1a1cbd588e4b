"""The SFA benchmark's pieces: a training configuration in-process, the frame search, the ratios, the plot."""
import json

import pytest

from dalitrain.benchmarks.bench_sfa import frame_search, main, plot_memory, summarize, train_steps

SMALL = {"name": "vivit_fe_tiny", "crop_size": 64}


def test_each_mode_trains_what_it_should():
    results = {mode: train_steps({"mode": mode, "frames": 8, "batch": 1, "device": "cpu", "warmup": 1, "steps": 1,
                                  "model": SMALL}) for mode in ("full", "frozen", "sfa")}
    d, classes = 96, 400
    head = d * classes + classes
    assert results["full"]["trainable_params"] > results["sfa"]["trainable_params"] > \
        results["frozen"]["trainable_params"]
    assert results["sfa"]["trainable_params"] - results["frozen"]["trainable_params"] == 2 * (d * d + d)  # adapter
    assert results["frozen"]["trainable_params"] > head
    for result in results.values():
        assert result["step_s"] > 0 and result["peak_mem_mb"] >= result["step_mem_mb"]


def fake(step_mb_per_frame):
    return lambda frames: {"step_mem_mb": step_mb_per_frame * frames}


def test_frame_search_climbs_the_ladder_until_the_budget_is_exceeded():
    rows = frame_search(fake(10.0), budget=400.0, max_frames=1024)
    assert [f for f, _ in rows] == [4, 8, 16, 32, 48]  # 480 MB at 48 frames: over, and the last point
    capped = frame_search(fake(0.1), budget=400.0, max_frames=64)
    assert [f for f, _ in capped] == [4, 8, 16, 32, 48, 64]


def test_ratios_from_the_measurements(tmp_path):
    timing = {"full": {"step_s": 4.0}, "frozen": {"step_s": 1.6}, "sfa": {"step_s": 2.0}}
    curves = {"full": frame_search(fake(20.0), 400.0, 1024), "sfa": frame_search(fake(3.0), 400.0, 1024)}
    summary = summarize(timing, {"step_s": 0.5}, curves, 400.0, 1024)
    assert summary["step_time_ratio"] == pytest.approx(0.5)
    assert summary["frozen_step_time_ratio"] == pytest.approx(0.4)
    assert (summary["frames_full"], summary["frames_sfa"]) == (16, 128)  # 320 <= 400 < 640; 384 <= 400 < 576
    assert summary["frames_ratio"] == pytest.approx(8.0) and not summary["frames_sfa_at_cap"]
    assert summary["curriculum_time_ratio"] == pytest.approx((0.5 + 2.0) / 4.0)
    png = tmp_path / "memory.png"
    plot_memory(curves, 400.0, "cpu", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_writes_every_ratio(tmp_path):
    out = tmp_path / "sfa.json"
    assert main(["--quick", "--frames", "8", "--max-frames", "16", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("step_time_ratio", "frames_full", "frames_sfa", "frames_ratio", "curriculum_time_ratio"):
        assert result[key] > 0
    assert result["frames_sfa"] >= result["frames_full"]
