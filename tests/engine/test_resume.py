"""A run killed with SIGKILL and resumed logs exactly the losses of the uninterrupted run (CPU)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("worker.py")


def run_worker(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), str(output_dir), *extra], capture_output=True, text=True,
                          timeout=240)


def train_losses(output_dir: Path) -> dict[int, dict]:
    """global step -> the last record logged for it (a resumed run re-logs the steps after its checkpoint)."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if r["kind"] == "train"}


def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_worker(whole).returncode == 0
    # killed while fetching epoch 2's third batch (0-based epoch 1, step 2): after the epoch-1 checkpoint
    first = run_worker(killed, "--kill-at", "1", "2")
    assert first.returncode == -signal.SIGKILL
    assert max(train_losses(killed)) == 6  # it logged 4 + 2 steps before dying
    second = run_worker(killed)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "step-00000004.pt" in second.stdout
    expected, got = train_losses(whole), train_losses(killed)
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for step in expected:
        for key in ("loss", "ce", "projection", "informative", "lr"):
            assert got[step][key] == expected[step][key], (step, key)
    final_whole = torch.load(whole / "params-rank0.pt")
    final_killed = torch.load(killed / "params-rank0.pt")
    assert all(torch.equal(final_whole[k], final_killed[k]) for k in final_whole)
