"""What every kernel file shares: Triton (or its stand-in), the backend choice and the allocation of the buffers
its kernels write.

Triton is optional: setup.py installs it on Linux only. Without it `triton` here is a stand-in whose `jit` leaves a
kernel function undecorated (it is never launched), every kernel runs its PyTorch reference, and the first CUDA
call of each kernel says so in one line.
"""
from __future__ import annotations

import sys

import torch

from dalitrain.errors import UsageError

try:
    import triton
    import triton.language as tl
except ImportError:
    class _TritonAbsent:
        """`import triton` failed: enough of it for the kernel files to define their kernels."""
        @staticmethod
        def jit(function):
            return function

    triton, tl = _TritonAbsent(), None

HAVE_TRITON = tl is not None
BACKENDS = ("auto", "triton", "torch")
_told: set[str] = set()  # kernels whose fallback was reported


def use_triton(kernel: str, tensor: torch.Tensor, backend: str) -> bool:
    """auto: Triton for CUDA tensors, PyTorch otherwise. "triton" on CPU tensors runs the kernels in Triton's
    interpreter, which must have been switched on (TRITON_INTERPRET=1) before triton was imported."""
    if backend not in BACKENDS:
        raise ValueError(f"{kernel}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch" or (backend == "auto" and not tensor.is_cuda):
        return False
    if not HAVE_TRITON:
        if backend == "triton":
            raise UsageError(f"{kernel}: backend='triton' but Triton is not installed (pip install triton, Linux)")
        if kernel not in _told:
            _told.add(kernel)
            print(f"dalitrain: Triton is not installed: {kernel} runs its PyTorch reference", file=sys.stderr,
                  flush=True)
        return False
    if not tensor.is_cuda and not triton.knobs.runtime.interpret:
        raise ValueError(f"{kernel}: backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                         f"importing triton for CPU tensors")
    return True


def new_output(shape, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes is allocated here, so tests can poison it (fill it with NaN) and see any
    element a kernel forgot to write."""
    return torch.empty(shape, dtype=dtype, device=device)
