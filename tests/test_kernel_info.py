"""`dalitrain info kernels`: every kernel compiled per architecture on the CPU fits its shared memory, runs on tensor
cores in bf16/fp16 from sm_80 on without spilling more than 1 KB, and what cannot goes to SDPA."""
import json
import os
import subprocess
import sys

import pytest
import torch
import triton

from dalitrain.kernels.pooling_attention import triton_supported

HAS_PTXAS = os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))


def info_kernels(tmp_path, *args) -> list[dict]:
    """Runs the command in a child without the interpreter (the tests' TRITON_INTERPRET=1 would not compile)."""
    out = tmp_path / "kernels.json"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    child = subprocess.run([sys.executable, "-m", "dalitrain.cli", "info", "kernels", *args, "--json", str(out)],
                           env=env, capture_output=True, text=True, timeout=1200)
    assert child.returncode == 0, (child.stdout + child.stderr)[-3000:]
    return json.loads(out.read_text())


@pytest.mark.skipif(not HAS_PTXAS, reason="this triton has no bundled ptxas")
@pytest.mark.parametrize("arch, dtypes", [
    (86, ["bf16"]),  # the smallest shared memory of the tensor-core GPUs (A10, A40, L4, L40S, RTX 30/40)
    pytest.param(80, ["bf16", "fp16"], marks=pytest.mark.slow),
    pytest.param(89, ["bf16", "fp16"], marks=pytest.mark.slow),
    pytest.param(90, ["bf16", "fp16"], marks=pytest.mark.slow),
    pytest.param(86, ["fp16"], marks=pytest.mark.slow),
])
def test_every_kernel_fits_and_attention_uses_tensor_cores(tmp_path, arch, dtypes):
    rows = info_kernels(tmp_path, "--arch", str(arch), "--dtype", *dtypes, "fp32", "--head-dim", "64", "96")
    for row in rows:
        if row["path"] == "triton":
            assert row["shared_bytes"] <= row["limit_bytes"], row
        if row["kernel"].startswith("pooling_attention"):
            if row["dtype"] == "fp32":
                assert row["path"] == "sdpa" and "SDPA" in row["why"], row
            else:
                assert row["tensor_cores"] in ("mma", "wgmma") and row["spill_bytes"] <= 1024, row
    assert {r["head_dim"] for r in rows if r["kernel"] == "pooling_attention.forward"} == {64, 96}


def test_below_sm80_and_in_fp32_attention_goes_to_sdpa():
    assert triton_supported(torch.bfloat16, (8, 6)) == (True, "triton")
    assert triton_supported(torch.float16, (9, 0))[0]
    supported, why = triton_supported(torch.bfloat16, (7, 0))
    assert not supported and why.startswith("sm_70: below sm_80")
    supported, why = triton_supported(torch.float32, (9, 0))
    assert not supported and why.startswith("float32 inputs")
