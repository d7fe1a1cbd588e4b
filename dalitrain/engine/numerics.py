"""A process-wide guard for PyTorch's CPU numerics, applied before training or evaluation does any arithmetic.

PyTorch's CPU wheels route contiguous float unary ops (sqrt, exp, log, ...) to oneMKL's vector math library (VML),
each intra-op thread calling it on its chunk of the tensor (`ATen/cpu/vml.h`). oneMKL 2024.2, the version those
wheels bundle, picks each VML function's kernel on that function's first call, and when the first call comes from
several threads at once one thread can run a low-accuracy kernel for its whole chunk of that one call, although
high accuracy was asked for (pytorch/pytorch#188792; oneMKL 2025 no longer does). Measured here: AdamW's first
`sqrt` of its second moments came back off by up to 3e-4 relative on the main thread's half of a 288x96 weight in
about one run in five, so two runs of one config drifted apart in the 7th digit and exact resume could not be
checked. Calling each of these functions once on one element, on one thread, before anything runs them in parallel
settles the choice for good; it costs microseconds.
"""
from __future__ import annotations

import functools

import torch

# The ops `ATen/cpu/vml.h` sends to oneMKL (IMPLEMENT_VML_MKL; `tests/engine/test_numerics.py` reads the header
# of the installed PyTorch to keep this list complete), as torch function names.
MKL_VML_OPS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin",
               "sqrt", "tan", "tanh", "trunc")


@functools.cache
def warm_up_mkl_vml() -> None:
    """Make oneMKL choose every VML kernel PyTorch uses, for float32 and float64, from this thread alone."""
    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)  # in every op's domain (acos, erfinv, log: |x| < 1, x > 0)
        for name in MKL_VML_OPS:
            getattr(torch, name)(one)
