"""`dalitrain demo` end to end on the synthetic corpus's "tiny" preset, with a budget of seconds."""
import json
import subprocess
import sys

import pytest

for module in ("dalitrain.data.synth", "dalitrain.pipelines.loader", "dalitrain.models",
               "dalitrain.kernels.informative_loss"):
    pytest.importorskip(module)


def test_demo_writes_the_summary(tmp_path):
    from dalitrain.data.synth import generate_corpus

    generate_corpus(tmp_path / "corpus", preset="tiny", seed=0)  # the demo uses a complete corpus as it is
    done = subprocess.run([sys.executable, "-m", "dalitrain.cli", "demo", "--minutes", "0.5", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
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
