"""The model benchmark's pieces: one training configuration in-process, ratios, the table."""
import pytest

from dalitrain.benchmarks.bench_model import add_ratios, print_table, train_steps


def test_one_training_configuration_reports_speed_and_memory():
    result = train_steps({"model": "mvitv2_tiny", "frames": 8, "size": 64, "batch": 1, "attention": "fused",
                          "checkpointing": True, "device": "cpu", "warmup": 1, "steps": 1})
    assert result["clips_per_s"] > 0 and result["step_s"] > 0
    assert result["peak_mem_mb"] >= result["peak_rss_step_mb"] >= 0


def row(attention, checkpointing, clips_per_s, step_mb):
    return {"model": "m", "frames": 8, "size": 64, "batch": 2, "attention": attention,
            "checkpointing": checkpointing, "clips_per_s": clips_per_s, "peak_mem_mb": 300 + step_mb,
            "peak_rss_step_mb": step_mb}


def test_ratios_are_against_explicit_attention_without_checkpointing(capsys):
    rows = [row("fused", False, 3.0, 50.0), row("explicit", False, 2.0, 100.0), row("fused", True, 1.0, 25.0)]
    add_ratios(rows)
    assert [r["speed_ratio"] for r in rows] == pytest.approx([1.5, 1.0, 0.5])
    assert [r["memory_ratio"] for r in rows] == pytest.approx([0.5, 1.0, 0.25])  # the step's own memory
    print_table(rows, "cpu")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and "400 (100)" in lines[2] and "0.25" in lines[3]
