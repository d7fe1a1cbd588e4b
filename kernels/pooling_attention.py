"""Attention core of MViTv2's pooling attention, with the residual pooling connection fused into the epilogue.

Math. q [B, h, Lq, dh] against the pooled k, v [B, h, Lkv, dh] (Lq != Lkv in general; MViTv2-S stage 1:
Lq = 25088, Lkv = 392, dh = 96), residual [B, h, Lq, dh] or None, scale = 1 / sqrt(dh) unless given:
    P   = softmax(q k^T * scale)          [Lq, Lkv] per (batch, head), never stored
    out = P v + residual
Forward (flash-attention style): one program per (tile of BLOCK_M queries, batch * head) streams k, v in tiles
of BLOCK_N keys with an online softmax (running max and sum, in base 2), writes out and the log-sum-exp
lse [B * h, Lq] (fp32, base 2) for the backward. When a residual is given and a gradient is needed, the attention
output O = P v (without the residual) is written too: the backward needs delta = rowsum(dO * O), and recovering
O as out - residual would cost the digits of the residual's magnitude.
Backward, with P recomputed from lse and delta = rowsum(dout * O) (one PyTorch reduction):
    dV = P^T dout,   dS = P * (dout v^T - delta),   dQ = dS k * scale,   dK = dS^T q * scale,   dresidual = dout
dQ: one program per query tile, streaming k, v. dK, dV: one program per (key tile, batch * head, slice of the
queries); Lkv << Lq here, so the query loop is split over programs that write fp32 partial sums (no atomics,
deterministic), summed afterwards.

Dtypes: fp32, fp16, bf16 (q, k, v, residual alike); products in the input dtype with fp32 accumulation (fp32:
IEEE products, no TF32), softmax statistics in fp32; outputs and gradients in the input dtype.
Limits: any Lq, Lkv >= 1; any dh (padded to a power of two >= 16 and masked, so 96 runs as 128); the last
dimension must be contiguous (other strides are free); element offsets are int32, so each tensor holds fewer
than 2^31 elements. The Triton interpreter (TRITON_INTERPRET=1, CPU tensors)
mishandles bf16; use fp32 or fp16 there.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from . import _backend
from ._backend import tl, triton

BLOCK_M, BLOCK_N = 64, 32
# Enough programs for the dK/dV kernel to fill a GPU before the query loop is split further.
_TARGET_PROGRAMS = 256
_LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------------------------------------
# Triton kernels. Pointers arrive at element [0, 0, 0, 0]; strides (batch, head, row); the head dim is contiguous.
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def _program_tile(H, BLOCK: tl.constexpr, DH_PAD: tl.constexpr):
    """(batch, head, this program's rows along axis 0 of the grid, head-dim indices); grid axis 1 is batch * head."""
    bh = tl.program_id(1)
    return bh // H, bh % H, tl.program_id(0) * BLOCK + tl.arange(0, BLOCK), tl.arange(0, DH_PAD)


@triton.jit
def _load_rows(head_ptr, stride_l, rows, dims, L, DH):
    """Tile [rows, dims] of one (batch, head) slice [L, DH] (head dim contiguous), zero outside it."""
    return tl.load(head_ptr + rows[:, None] * stride_l + dims[None, :],
                   mask=(rows[:, None] < L) & (dims[None, :] < DH), other=0.0)


@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, res_ptr, out_ptr, attn_ptr, lse_ptr,
                    sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sr_b, sr_h, sr_l, so_b, so_h, so_l,
                    H, Lq, Lkv, DH, qk_scale,
                    HAS_RESIDUAL: tl.constexpr, STORE_ATTN: tl.constexpr, PRECISION: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DH_PAD: tl.constexpr):
    b, h, rows, dims = _program_tile(H, BLOCK_M, DH_PAD)
    keys = tl.arange(0, BLOCK_N)
    q = _load_rows(q_ptr + b * sq_b + h * sq_h, sq_l, rows, dims, Lq, DH)
    k_head = k_ptr + b * sk_b + h * sk_h
    v_head = v_ptr + b * sv_b + h * sv_h
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, DH_PAD], dtype=tl.float32)
    for start in range(0, Lkv, BLOCK_N):
        n = start + keys
        k = _load_rows(k_head, sk_l, n, dims, Lkv, DH)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BLOCK_M, BLOCK_N], base-2 logits
        s = tl.where(n[None, :] < Lkv, s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, axis=1))  # finite: every key tile holds at least one key
        p = tl.exp2(s - new_max[:, None])
        rescale = tl.exp2(row_max - new_max)
        row_sum = row_sum * rescale + tl.sum(p, axis=1)
        v = _load_rows(v_head, sv_l, n, dims, Lkv, DH)
        acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        row_max = new_max
    acc = acc / row_sum[:, None]
    tl.store(lse_ptr + (b * H + h) * Lq + rows, row_max + tl.log2(row_sum), mask=rows < Lq)
    mask = (rows[:, None] < Lq) & (dims[None, :] < DH)
    out_offsets = b * so_b + h * so_h + rows[:, None] * so_l + dims[None, :]
    if STORE_ATTN:
        tl.store(attn_ptr + out_offsets, acc.to(attn_ptr.dtype.element_ty), mask=mask)
    if HAS_RESIDUAL:
        res = tl.load(res_ptr + b * sr_b + h * sr_h + rows[:, None] * sr_l + dims[None, :], mask=mask, other=0.0)
        acc += res.to(tl.float32)
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_dq_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
                        sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sd_b, sd_h, sd_l,
                        H, Lq, Lkv, DH, qk_scale, scale,
                        PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        DH_PAD: tl.constexpr):
    """dq for one query tile; dq shares the contiguous layout of do (strides sd_*)."""
    b, h, rows, dims = _program_tile(H, BLOCK_M, DH_PAD)
    keys = tl.arange(0, BLOCK_N)
    q = _load_rows(q_ptr + b * sq_b + h * sq_h, sq_l, rows, dims, Lq, DH)
    do_head = b * sd_b + h * sd_h
    do = _load_rows(do_ptr + do_head, sd_l, rows, dims, Lq, DH)
    lse = tl.load(lse_ptr + (b * H + h) * Lq + rows, mask=rows < Lq, other=0.0)
    delta = tl.load(delta_ptr + (b * H + h) * Lq + rows, mask=rows < Lq, other=0.0)
    k_head = k_ptr + b * sk_b + h * sk_h
    v_head = v_ptr + b * sv_b + h * sv_h
    dq = tl.zeros([BLOCK_M, DH_PAD], dtype=tl.float32)
    for start in range(0, Lkv, BLOCK_N):
        n = start + keys
        k = _load_rows(k_head, sk_l, n, dims, Lkv, DH)
        v = _load_rows(v_head, sv_l, n, dims, Lkv, DH)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.where(n[None, :] < Lkv, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    mask = (rows[:, None] < Lq) & (dims[None, :] < DH)
    tl.store(dq_ptr + do_head + rows[:, None] * sd_l + dims[None, :], (dq * scale).to(dq_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _backward_dkdv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
                          sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sd_b, sd_h, sd_l,
                          H, Lq, Lkv, DH, qk_scale, scale, split_rows,
                          PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          DH_PAD: tl.constexpr):
    """fp32 partial dk, dv [split, B * h, Lkv, DH] of one key tile over one slice of `split_rows` queries."""
    b, h, n, dims = _program_tile(H, BLOCK_N, DH_PAD)
    bh, split = b * H + h, tl.program_id(2)
    k = _load_rows(k_ptr + b * sk_b + h * sk_h, sk_l, n, dims, Lkv, DH)
    v = _load_rows(v_ptr + b * sv_b + h * sv_h, sv_l, n, dims, Lkv, DH)
    q_head = q_ptr + b * sq_b + h * sq_h
    do_head = do_ptr + b * sd_b + h * sd_h
    dk = tl.zeros([BLOCK_N, DH_PAD], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, DH_PAD], dtype=tl.float32)
    row_end = tl.minimum((split + 1) * split_rows, Lq)
    for start in range(split * split_rows, row_end, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = _load_rows(q_head, sq_l, rows, dims, row_end, DH)
        do = _load_rows(do_head, sd_l, rows, dims, row_end, DH)
        lse = tl.load(lse_ptr + bh * Lq + rows, mask=rows < row_end, other=0.0)
        delta = tl.load(delta_ptr + bh * Lq + rows, mask=rows < row_end, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [BLOCK_N, BLOCK_M]
        p_t = tl.where(rows[None, :] < row_end, tl.exp2(s_t - lse[None, :]), 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    offsets = ((split * tl.num_programs(1) + bh) * Lkv + n[:, None]) * DH + dims[None, :]
    mask = (n[:, None] < Lkv) & (dims[None, :] < DH)
    tl.store(dk_ptr + offsets, dk * scale, mask=mask)
    tl.store(dv_ptr + offsets, dv, mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------------
def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def padded_head_dim(head_dim: int) -> int:
    """The head dim the kernels compute with: a power of two >= 16, masked beyond `head_dim` (96 runs as 128)."""
    return max(16, triton.next_power_of_2(head_dim))


def _tiles(dtype: torch.dtype, head_dim: int) -> dict:
    """The constexprs of every kernel here. The same on every architecture: in fp16/bf16 the largest kernel (dK/dV at
    dh 128) needs 58 KB of shared memory, under the smallest limit (64 KB, sm_75); fp32 is not launched on CUDA
    (`triton_supported`). `dalitrain info kernels` compiles these per architecture and shows the numbers."""
    return dict(PRECISION="ieee" if dtype == torch.float32 else "tf32", BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
                DH_PAD=padded_head_dim(head_dim))


def _launch_constants(q: torch.Tensor, scale: float) -> dict:
    return dict(qk_scale=scale * _LOG2E, **_tiles(q.dtype, q.shape[-1]))


def triton_supported(dtype: torch.dtype, capability: tuple[int, int]) -> tuple[bool, str]:
    """Whether backend "auto" runs the kernels for CUDA inputs of `dtype` on a GPU of `capability`, and why not.
    The kernels are built for tensor cores: fp16/bf16 from sm_80 on. fp32 inputs would run on FMA units with
    2-14 KB of register spills per thread and need 107-173 KB of shared memory (over the limit of sm_86/89 and
    sm_70, and of sm_80 for dK/dV); there, and below sm_80, scaled_dot_product_attention plus the residual runs
    instead."""
    if dtype not in (torch.float16, torch.bfloat16):
        return False, f"{str(dtype).removeprefix('torch.')} inputs: no tensor-core path; SDPA + residual"
    if capability < (8, 0):
        return False, f"sm_{capability[0]}{capability[1]}: below sm_80; SDPA + residual"
    return True, "triton"


def compile_variants(dtype: torch.dtype, head_dim: int) -> list[tuple[str, object, dict, dict]]:
    """(name, kernel, {argument: Triton type}, constexprs) of each kernel as the launchers call it for `dtype`
    inputs of head dim `head_dim`: what `dalitrain info kernels` compiles."""
    element = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}[dtype]
    types = {name: element for name in ("q_ptr", "k_ptr", "v_ptr", "res_ptr", "out_ptr", "attn_ptr", "do_ptr",
                                         "dq_ptr")}
    types.update({name: "*fp32" for name in ("lse_ptr", "delta_ptr", "dk_ptr", "dv_ptr")}, qk_scale="fp32",
                 scale="fp32")
    tiles = _tiles(dtype, head_dim)
    return [("pooling_attention.forward", _forward_kernel, types, dict(HAS_RESIDUAL=True, STORE_ATTN=True, **tiles)),
            ("pooling_attention.backward_dq", _backward_dq_kernel, types, tiles),
            ("pooling_attention.backward_dkdv", _backward_dkdv_kernel, types, tiles)]


def _forward_triton(q, k, v, residual, scale: float, store_attn: bool):
    """(out, attention output without the residual or None, lse [B * h, Lq] fp32 base 2)."""
    B, H, Lq, DH = q.shape
    Lkv = k.shape[2]
    out = _backend.new_output(q.shape, dtype=q.dtype, device=q.device)
    attn = _backend.new_output(q.shape, dtype=q.dtype, device=q.device) if store_attn else out
    lse = _backend.new_output((B * H, Lq), dtype=torch.float32, device=q.device)
    res = residual if residual is not None else out  # never read without HAS_RESIDUAL
    grid = (triton.cdiv(Lq, BLOCK_M), B * H)
    _forward_kernel[grid](q, k, v, res, out, attn, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(res),
                          *_strides(out), H, Lq, Lkv, DH, HAS_RESIDUAL=residual is not None,
                          STORE_ATTN=store_attn, **_launch_constants(q, scale))
    return out, (attn if store_attn else None), lse


def _backward_triton(q, k, v, attn, lse, dout, scale: float):
    B, H, Lq, DH = q.shape
    Lkv = k.shape[2]
    dout = dout.contiguous()
    delta = (dout.float() * attn.float()).sum(-1).reshape(B * H, Lq)
    constants = _launch_constants(q, scale)
    strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(dout))
    dq = _backend.new_output(q.shape, dtype=q.dtype, device=q.device)
    _backward_dq_kernel[(triton.cdiv(Lq, BLOCK_M), B * H)](q, k, v, dout, lse, delta, dq, *strides,
                                                           H, Lq, Lkv, DH, scale=scale, **constants)
    kv_tiles, q_tiles = triton.cdiv(Lkv, BLOCK_N), triton.cdiv(Lq, BLOCK_M)
    splits = min(q_tiles, max(1, _TARGET_PROGRAMS // (kv_tiles * B * H)))
    split_rows = triton.cdiv(q_tiles, splits) * BLOCK_M
    splits = triton.cdiv(Lq, split_rows)
    dk = _backend.new_output((splits, B * H, Lkv, DH), dtype=torch.float32, device=q.device)
    dv = _backend.new_output((splits, B * H, Lkv, DH), dtype=torch.float32, device=q.device)
    _backward_dkdv_kernel[(kv_tiles, B * H, splits)](q, k, v, dout, lse, delta, dk, dv, *strides, H, Lq, Lkv, DH,
                                                     scale=scale, split_rows=split_rows, **constants)
    return dq, dk.sum(0).reshape(k.shape).to(k.dtype), dv.sum(0).reshape(v.shape).to(v.dtype)


# ----------------------------------------------------------------------------------------------------------
# Autograd and the public function
# ----------------------------------------------------------------------------------------------------------
class _PoolingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, residual, scale: float):
        store_attn = residual is not None and any(ctx.needs_input_grad[:3])
        out, attn, lse = _forward_triton(q, k, v, residual, scale, store_attn)
        ctx.save_for_backward(q, k, v, attn if residual is not None else out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, attn, lse = ctx.saved_tensors
        dresidual = dout if ctx.needs_input_grad[3] else None
        if not any(ctx.needs_input_grad[:3]):
            return None, None, None, dresidual, None
        dq, dk, dv = _backward_triton(q, k, v, attn, lse, dout, ctx.scale)
        return dq, dk, dv, dresidual, None


def _check_inputs(q, k, v, residual) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.shape != k.shape:
        raise ValueError(f"pooling_attention: q must be [B, h, Lq, dh] and k, v the same [B, h, Lkv, dh], got "
                         f"q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}")
    if k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3] or min(q.shape[2], k.shape[2]) < 1:
        raise ValueError(f"pooling_attention: q {list(q.shape)} and k {list(k.shape)} must share B, h, dh "
                         f"with Lq, Lkv >= 1")
    if residual is not None and residual.shape != q.shape:
        raise ValueError(f"pooling_attention: residual {list(residual.shape)} must have q's shape {list(q.shape)}")
    if len({t.dtype for t in (q, k, v, residual) if t is not None}) != 1:
        raise ValueError("pooling_attention: q, k, v and residual must share one dtype")


def _autocast_inputs(*tensors: Optional[torch.Tensor]) -> tuple:
    """Under autocast, the kernel gets autocast's dtype. A custom Function is on none of autocast's op lists, so it
    would receive what the op before it returned: fp32 from MViTv2's norm_q/k/v (CUDA autocast runs layer_norm in
    fp32), and the fp32 kernels run without tensor cores and past the shared memory of most GPUs."""
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t if t is None else t.to(dtype) for t in tensors)


def _head_dim_contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def pooling_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, residual: Optional[torch.Tensor] = None,
                      scale: Optional[float] = None, backend: str = "auto") -> torch.Tensor:
    """softmax(q k^T * scale) v + residual, [B, h, Lq, dh], in q's dtype (autocast's dtype under autocast).
    backend "auto": the Triton kernels for fp16/bf16 CUDA tensors on sm_80 and later (`triton_supported`),
    scaled_dot_product_attention + residual otherwise; "triton" forces the kernels."""
    _check_inputs(q, k, v, residual)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    q, k, v, residual = _autocast_inputs(q, k, v, residual)
    if backend == "auto" and q.is_cuda:
        backend = "triton" if triton_supported(q.dtype, torch.cuda.get_device_capability(q.device))[0] else "torch"
    if not _backend.use_triton("pooling_attention", q, backend):
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        return out if residual is None else out + residual
    q, k, v, residual = (_head_dim_contiguous(t) for t in (q, k, v, residual))
    return _PoolingAttention.apply(q, k, v, residual, scale)


def pooling_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                          residual: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    """The explicit formula in q's dtype: materialises the [Lq, Lkv] attention matrix of every (batch, head)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    out = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v
    return out if residual is None else out + residual
