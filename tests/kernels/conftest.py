"""Shared by the kernel tests: poisoned kernel outputs, per-case random generators, the error criterion."""
import os
import subprocess
import sys
import zlib

import pytest
import torch
import triton

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


_COMPILE_PREAMBLE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

def compile_for_sm90(fn, types, **constexprs):
    signature = {name: "constexpr" if name in constexprs else types.get(name, "i32") for name in fn.arg_names}
    triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32))
"""


@pytest.fixture
def compiles_for_cuda():
    """compiles_for_cuda(body): run `body` in a child without the interpreter, where `compile_for_sm90(kernel,
    {arg: type}, **constexprs)` compiles a kernel to an sm_90 cubin (Triton's bundled ptxas; no GPU needed), so
    the GPU path's type and layout errors, which the interpreter does not see, fail here."""
    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")):
        pytest.skip("this triton has no bundled ptxas")

    def compile_body(body: str) -> None:
        env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        child = subprocess.run([sys.executable, "-c", _COMPILE_PREAMBLE + body], env=env, capture_output=True,
                               text=True)
        assert child.returncode == 0, child.stderr[-3000:]

    return compile_body
