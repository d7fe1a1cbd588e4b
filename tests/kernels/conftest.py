"""Shared by the kernel tests: poisoned kernel outputs, per-case random generators, the error criterion."""
import zlib

import pytest
import torch

from dalitrain.kernels import _backend

# Absolute slack added to "twice PyTorch's own error", relative to the size of the exact result.
_ABS_SLACK = {torch.float32: 1e-6, torch.float16: 1e-4}


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every buffer a kernel writes starts as NaN, so an element the kernel forgets to write fails the test.
    Yields the list of buffers handed out (tests check the hook is really on the Triton path)."""
    handed_out = []

    def poisoned(shape, *, dtype, device):
        buffer = torch.full(shape, float("nan"), dtype=dtype, device=device)
        handed_out.append(buffer)
        return buffer

    monkeypatch.setattr(_backend, "new_output", poisoned)
    return handed_out


@pytest.fixture
def rng(request) -> torch.Generator:
    """Fresh inputs for every case, reproducible from the test's id."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def assert_close_to_exact():
    """assert_close_to_exact(name, actual, torch_at_dtype, exact): the error of `actual` against the float64 result
    is at most twice the error of PyTorch's own run at the input dtype, plus a small slack."""

    def check(name, actual, torch_at_dtype, exact, dtype):
        exact = exact.detach().double()
        ours = (actual.detach().double() - exact).abs().max().item()
        theirs = (torch_at_dtype.detach().double() - exact).abs().max().item()
        slack = _ABS_SLACK[dtype] * (1.0 + exact.abs().max().item())
        assert ours <= 2 * theirs + slack, f"{name}: error {ours:.3g} > 2 x PyTorch's {theirs:.3g} + {slack:.3g}"

    return check
