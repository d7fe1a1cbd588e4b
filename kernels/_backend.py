"""What every kernel file shares: the backend choice and the allocation of the buffers its kernels write."""
from __future__ import annotations

import torch
import triton

BACKENDS = ("auto", "triton", "torch")


def use_triton(kernel: str, tensor: torch.Tensor, backend: str) -> bool:
    """auto: Triton for CUDA tensors, PyTorch otherwise. "triton" on CPU tensors runs the kernels in Triton's
    interpreter, which must have been switched on (TRITON_INTERPRET=1) before triton was imported."""
    if backend not in BACKENDS:
        raise ValueError(f"{kernel}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch" or (backend == "auto" and not tensor.is_cuda):
        return False
    if not tensor.is_cuda and not triton.knobs.runtime.interpret:
        raise ValueError(f"{kernel}: backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                         f"importing triton for CPU tensors")
    return True


def new_output(shape, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes is allocated here, so tests can poison it (fill it with NaN) and see any
    element a kernel forgot to write."""
    return torch.empty(shape, dtype=dtype, device=device)
