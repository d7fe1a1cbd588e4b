import pytest
import torch
import triton

from dalitrain.kernels._backend import use_triton


def test_auto_runs_pytorch_for_cpu_tensors():
    assert not use_triton("kernel", torch.ones(2), "auto")
    assert not use_triton("kernel", torch.ones(2), "torch")
    assert use_triton("kernel", torch.ones(2), "triton")  # the tests run under TRITON_INTERPRET=1


def test_triton_on_cpu_without_the_interpreter_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)
    with pytest.raises(ValueError, match=r"^kernel: backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1"):
        use_triton("kernel", torch.ones(2), "triton")
