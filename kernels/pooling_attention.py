"""Attention core of MViTv2's pooling attention: out = softmax(q k^T * scale) v + residual.

q [B, h, Lq, dh], k and v [B, h, Lkv, dh] (pooled, Lkv <= Lq), residual [B, h, Lq, dh] or None.
The Triton kernel lands with the kernels issue; the PyTorch path is scaled_dot_product_attention + residual.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def pooling_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                          residual: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out if residual is None else out + residual


def pooling_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, residual: Optional[torch.Tensor] = None,
                      scale: Optional[float] = None, backend: str = "auto") -> torch.Tensor:
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"pooling_attention: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    return pooling_attention_ref(q, k, v, residual=residual, scale=scale)
