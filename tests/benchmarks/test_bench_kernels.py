import json

import torch

from dalitrain.benchmarks import bench_kernels


def test_records_have_the_documented_fields(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_kernels, "_SECONDS_PER_PATH", 0.01)
    cases = [("informative_loss", dict(B=5, d=33)),
             ("pooling_attention", dict(B=1, h=2, Lq=37, Lkv=13, dh=96))]
    records = bench_kernels.run(cases, "cpu")
    json.dumps(records)  # the --json output must serialise
    assert [r["kernel"] for r in records] == ["informative_loss", "pooling_attention"]
    assert (records[0]["B"], records[0]["d"]) == (5, 33)
    assert (records[1]["Lq"], records[1]["Lkv"], records[1]["dh"]) == (37, 13, 96)
    for record in records:
        assert record["speedup"] > 0 and record["memory_ratio"] >= 0
        assert {"dalitrain", "reference"} <= set(record["seconds"])
        assert record["seconds"]["dalitrain"]["best"] <= record["seconds"]["dalitrain"]["median"]


def test_child_process_sees_the_covariance_matrix():
    """The reference builds C [d, d] fp32 (4 MiB at d = 1024) and keeps it alive through its backward; a peak-memory
    measurement that misses it is broken. The Gram path never holds anything near that size."""
    peaks = bench_kernels.peak_memory("informative_loss", dict(B=8, d=1024), {}, "cpu")
    assert peaks["reference"] >= 4 * 2**20
    assert peaks["dalitrain"] < 1 * 2**20


def test_roofline_counts():
    # Hand-counted: Gram 2 B^2 d forward + 2 B^2 d backward; reference 2 B d^2 forward + 4 B d^2 backward.
    assert bench_kernels.roofline("informative_loss", dict(B=64, d=2048), "dalitrain", 2) == (33554432, 786432)
    assert bench_kernels.roofline("informative_loss", dict(B=64, d=2048), "reference", 2)[0] == 1610612736
    # 14 B h Lq Lkv dh FLOPs; (7 Lq + 6 Lkv) B h dh elements.
    assert bench_kernels.roofline("pooling_attention", dict(B=1, h=1, Lq=10, Lkv=4, dh=8), "dalitrain", 4) == \
        (4480, 3008)


def test_cuda_section_is_skipped_with_a_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(bench_kernels, "run", lambda cases, device: [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_kernels.main(["--quick"]) == 0
    assert "no CUDA device: TFLOP/s, GB/s and roofline" in capsys.readouterr().out
