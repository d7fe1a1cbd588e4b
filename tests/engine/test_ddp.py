"""Two torchrun processes (gloo) train in lockstep and match one process that holds the whole batch."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("worker.py")


def losses(output_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method, loss", [
    ("multitrain", []),  # the released objective: per-sample reduction over the global batch
    ("multitrain", ["projection=paper", "reduction=per_dataset", "uncertainty=log_sigma"]),
    ("cofinetune", []),
])
def test_two_ranks_equal_one_process_with_the_whole_batch(tmp_path, method, loss):
    """Also: DDP runs without searching for unused parameters, for a method whose model has no expander or
    projection and whose heads see batches without their dataset on one rank."""
    two, one = tmp_path / "two", tmp_path / "one"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    options = ["--epochs", "1", "--no-randomness", "--method", method, "--loss", *loss]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(WORKER), str(two), "--batch-size", "2", *options],
                         capture_output=True, text=True, timeout=240, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, str(WORKER), str(one), "--batch-size", "4", *options],
                            capture_output=True, text=True, timeout=240, env=env)
    assert single.returncode == 0, single.stderr[-3000:]

    rank0, rank1 = torch.load(two / "params-rank0.pt"), torch.load(two / "params-rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    reference = torch.load(one / "params-rank0.pt")
    # The informative loss is invariant to a shift of the expander output, so the expander bias's gradient is
    # rounding noise, which Adam normalises into full-size steps: that one parameter is not comparable.
    for key in set(reference) - {"expander.bias"}:
        assert torch.allclose(rank0[key], reference[key], atol=1e-5, rtol=1e-4), key
    assert losses(two) == pytest.approx(losses(one), rel=1e-5, abs=1e-6)
    assert len(losses(one)) == 4


@pytest.mark.parametrize("variant", [[], ["--sfa"]], ids=["multitrain", "sfa_stage2"])
def test_the_real_model_on_two_ranks_equals_one_process(tmp_path, variant):
    """mvitv2_tiny (its conv stem's BatchNorms), the expander (its BatchNorm) and the informative loss all see the
    global batch: 2 gloo ranks with 2 clips each give one process's loss (mean over ranks), BatchNorm statistics
    and gradients on all 4. With per-rank BatchNorm the first ranks' losses differed by 2e-4.
    SFA's stage 2: DDP without the unused-parameter search takes the frozen spatial transformer (excluded: it has
    no gradient) and its eval-mode BatchNorms stay as loaded on every rank."""
    worker = Path(__file__).with_name("real_model_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(worker), str(two), *variant],
                         capture_output=True, text=True, timeout=240, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, str(worker), str(one), *variant], capture_output=True, text=True, timeout=240,
                            env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = [torch.load(two / f"rank{r}.pt") for r in range(2)]
    reference = torch.load(one / "rank0.pt")
    assert ((ranks[0]["loss"] + ranks[1]["loss"]) / 2).item() == pytest.approx(reference["loss"].item(), rel=1e-5)
    torch.testing.assert_close(ranks[0]["running_var"], reference["running_var"], rtol=1e-5, atol=1e-6)
    assert set(ranks[0]["grads"]) == set(reference["grads"])
    for name, expected in reference["grads"].items():
        # per tensor, as a norm: gradients that are zero in exact arithmetic (a bias before a norm) are rounding
        # noise of 1e-9 here, and a sum over 2 ranks rounds differently from one over 4 clips
        assert (ranks[0]["grads"][name] - expected).norm() <= 1e-4 * expected.norm() + 1e-6, name
        torch.testing.assert_close(ranks[1]["grads"][name], ranks[0]["grads"][name], msg=name)

    if variant:
        assert reference["grads"] and not any(name.startswith("backbone.spatial.") for name in reference["grads"])
        assert {name.split(".")[1] for name in reference["grads"] if name.startswith("backbone.")} == {
            "adapter", "temporal"}
        torch.testing.assert_close(ranks[0]["running_var"], torch.ones_like(reference["running_var"]))