"""MultiTrain's informative (variance/covariance) loss, with the covariance term in its Gram-matrix form.

Math. z [B, d] (B >= 2), Zc = z - mean_b(z), every statistic over the batch dimension:
    var_j    = sum_b Zc_bj^2 / (B - 1)                      unbiased, as MultiTrain's code
    var_loss = var_weight * mean_j relu(gamma - sqrt(var_j + eps))
    C        = Zc^T Zc / (B - 1)                            [d, d]
    cov_loss = cov_weight / d * sum_{i != j} C_ij^2
Both terms come back ALREADY multiplied by their weights (MultiTrain: 25 and 1), so a caller adds them and
applies the overall informative weight once: `informative_weight * (var_loss + cov_loss)`.

The off-diagonal sum is ||C||_F^2 - sum_j var_j^2, and ||Zc^T Zc||_F = ||Zc Zc^T||_F. With K the Gram matrix of
Zc on its smaller side (K = Zc Zc^T [B, B] when B < d, else K = Zc^T Zc [d, d]):
    cov_loss = cov_weight / d * (||K||_F^2 / (B - 1)^2 - sum_j var_j^2)
which costs min(B, d)^2 max(B, d) instead of the 2 B d^2 of building C (every public VICReg-style implementation
builds C). When B >= d, K = (B - 1) C and its off-diagonal is summed directly (no cancellation against the
diagonal, which dominates when B >> d).
`_CentredGram` is the only autograd node that touches z: it returns (var [d], K [m, m]) and the scalar assembly
above runs as ordinary autograd on those small tensors. Its backward, given dvar and dK, is
    dz = Zc * 2 dvar / (B - 1) + P S Zc       (B < d),     dz = Zc * 2 dvar / (B - 1) + Zc S     (B >= d)
with S = dK + dK^T and P = I - 1 1^T / B (the derivative of the centring; Zc S already has zero column sums),
so the backward never builds C either.

Paths (same math, same saved tensors): "torch" runs these formulas as matmuls in fp32, also under autocast; "triton"
runs three kernels: column statistics (one pass over z, Chan's merge of per-tile mean / M2), the centred Gram matrix
(upper-triangle tiles mirrored, split over the reduction dimension so a small B still fills a GPU, centring fused
into the loads), and the backward (dz = Zc * coef + S Zc in one pass, centring fused). The statistics need the mean
before the Gram matrix: forming Zc Zc^T from raw moments (z z^T - mean terms) loses every digit for fp16 inputs of
large magnitude, hence two passes over z forward and one backward.

Dtypes: z fp32, fp16 or bf16; accumulation and the returned losses are fp32; dz has z's dtype.
Limits: B >= 2 (the unbiased variance divides by B - 1); element offsets are int32 (B * d < 2^31). Under the
Triton interpreter (TRITON_INTERPRET=1, CPU tensors) bf16 loads are unreliable; the kernels upcast to fp32 right
after every load.

Distributed: the statistics are over the global batch. `gather_rows(z)` all-gathers the rows of every rank,
differentiably; see its docstring for the gradient scaling.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from . import _backend
from ._backend import tl, triton

# Features handled by one program of the Gram kernel before its partial sum is written (split-K granularity).
_GRAM_SPLIT_FEATURES = 512
# Tiles of each kernel (the same on every architecture: the largest needs a few KB of shared memory; see
# `dalitrain info kernels`). The kernels upcast every load to fp32, so they run on FMA units in every dtype.
_STATS_TILES = dict(BLOCK_B=32, BLOCK_D=128)
_GRAM_TILES = dict(BLOCK_M=32, BLOCK_K=64)
_GRAM_BACKWARD_TILES = dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=32)


# ----------------------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def _load_centred(z_ptr, mean_ptr, rows, cols, M, N, stride_m, stride_n, CENTRE_COLS: tl.constexpr):
    """Tile X[rows, cols] of the centred matrix, fp32, zero outside [M, N]. X is a view of Zc: [B, d] when
    CENTRE_COLS (the mean is indexed by the column), Zc^T [d, B] otherwise (indexed by the row)."""
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    x = tl.load(z_ptr + rows[:, None] * stride_m + cols[None, :] * stride_n, mask=mask, other=0.0)
    x = x.to(tl.float32)
    if CENTRE_COLS:
        x = x - tl.load(mean_ptr + cols, mask=cols < N, other=0.0)[None, :]
    else:
        x = x - tl.load(mean_ptr + rows, mask=rows < M, other=0.0)[:, None]
    return tl.where(mask, x, 0.0)


@triton.jit
def _column_stats_kernel(z_ptr, mean_ptr, var_ptr, B, D, stride_b, stride_d,
                         BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """mean_j and unbiased var_j for one block of columns, in one pass over the rows (Chan's parallel merge of
    each row tile's exact mean and M2: as stable as two passes, without reading z twice)."""
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < D
    mean = tl.zeros([BLOCK_D], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, B, BLOCK_B):  # every tile before `start` is full: `start` rows merged so far
        rows = start + tl.arange(0, BLOCK_B)
        mask = (rows[:, None] < B) & col_ok[None, :]
        x = tl.load(z_ptr + rows[:, None] * stride_b + cols[None, :] * stride_d, mask=mask, other=0.0)
        x = x.to(tl.float32)
        n_tile = tl.minimum(B - start, BLOCK_B) * 1.0
        tile_mean = tl.sum(x, axis=0) / n_tile
        dev = tl.where(mask, x - tile_mean[None, :], 0.0)
        tile_m2 = tl.sum(dev * dev, axis=0)
        count = start * 1.0
        total = count + n_tile
        delta = tile_mean - mean
        mean = mean + delta * (n_tile / total)
        m2 = m2 + tile_m2 + delta * delta * (count * n_tile / total)
    tl.store(mean_ptr + cols, mean, mask=col_ok)
    tl.store(var_ptr + cols, m2 / (B - 1.0), mask=col_ok)


@triton.jit
def _centred_gram_kernel(z_ptr, mean_ptr, partial_ptr, M, N, stride_m, stride_n, split_size,
                         CENTRE_COLS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """partial[s, I, J] = sum over the s-th slice of the reduction dim of X[I, :] X[J, :]^T, for tile pairs
    I <= J only; the tile is mirrored to (J, I). X [M, N] is the centred view chosen by CENTRE_COLS."""
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    if pid_j < pid_i:
        return
    split = tl.program_id(2)
    rows_i = pid_i * BLOCK_M + tl.arange(0, BLOCK_M)
    rows_j = pid_j * BLOCK_M + tl.arange(0, BLOCK_M)
    acc = tl.zeros([BLOCK_M, BLOCK_M], dtype=tl.float32)
    k_end = tl.minimum((split + 1) * split_size, N)
    for k in range(split * split_size, k_end, BLOCK_K):
        ks = k + tl.arange(0, BLOCK_K)
        # ks beyond this split's end belong to the next split: mask them by passing k_end as the width.
        xi = _load_centred(z_ptr, mean_ptr, rows_i, ks, M, k_end, stride_m, stride_n, CENTRE_COLS)
        xj = _load_centred(z_ptr, mean_ptr, rows_j, ks, M, k_end, stride_m, stride_n, CENTRE_COLS)
        acc += tl.dot(xi, tl.trans(xj), input_precision="ieee")
    base = partial_ptr + split * M * M
    mask = (rows_i[:, None] < M) & (rows_j[None, :] < M)
    tl.store(base + rows_i[:, None] * M + rows_j[None, :], acc, mask=mask)
    tl.store(base + rows_j[None, :] * M + rows_i[:, None], acc, mask=mask)


@triton.jit
def _centred_gram_backward_kernel(z_ptr, mean_ptr, coef_ptr, s_ptr, dz_ptr, M, N, stride_m, stride_n,
                                  dstride_m, dstride_n, CENTRE_COLS: tl.constexpr, BLOCK_M: tl.constexpr,
                                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dX[I, J] = coef * X[I, J] + S[I, :] X[:, J], with X [M, N] the centred view, S [M, M] symmetric-ready
    and coef indexed by the feature (column when CENTRE_COLS, row otherwise); dX written through dz's strides."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in range(0, M, BLOCK_K):
        ks = k + tl.arange(0, BLOCK_K)
        s = tl.load(s_ptr + rows[:, None] * M + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < M),
                    other=0.0)
        acc += tl.dot(s, _load_centred(z_ptr, mean_ptr, ks, cols, M, N, stride_m, stride_n, CENTRE_COLS),
                      input_precision="ieee")
    x = _load_centred(z_ptr, mean_ptr, rows, cols, M, N, stride_m, stride_n, CENTRE_COLS)
    if CENTRE_COLS:
        coef = tl.load(coef_ptr + cols, mask=cols < N, other=0.0)[None, :]
    else:
        coef = tl.load(coef_ptr + rows, mask=rows < M, other=0.0)[:, None]
    acc += coef * x
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    tl.store(dz_ptr + rows[:, None] * dstride_m + cols[None, :] * dstride_n,
             acc.to(dz_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launchers: each returns what the matching PyTorch expression in _CentredGram returns.
# ----------------------------------------------------------------------------------------------------------
def _centred_view(z: torch.Tensor, gram_on_rows: bool):
    """(M, N, stride_m, stride_n) of the view X whose Gram matrix X X^T is K: Zc itself, or Zc^T."""
    B, d = z.shape
    if gram_on_rows:
        return B, d, z.stride(0), z.stride(1)
    return d, B, z.stride(1), z.stride(0)


def _column_stats_triton(z: torch.Tensor):
    B, d = z.shape
    mean = _backend.new_output((d,), dtype=torch.float32, device=z.device)
    var = _backend.new_output((d,), dtype=torch.float32, device=z.device)
    _column_stats_kernel[(triton.cdiv(d, _STATS_TILES["BLOCK_D"]),)](z, mean, var, B, d, z.stride(0), z.stride(1),
                                                                     **_STATS_TILES)
    return mean, var


def _centred_gram_triton(z: torch.Tensor, mean: torch.Tensor, gram_on_rows: bool) -> torch.Tensor:
    M, N, stride_m, stride_n = _centred_view(z, gram_on_rows)
    block_m = _GRAM_TILES["BLOCK_M"]
    splits = triton.cdiv(N, _GRAM_SPLIT_FEATURES)
    partial = _backend.new_output((splits, M, M), dtype=torch.float32, device=z.device)
    grid = (triton.cdiv(M, block_m), triton.cdiv(M, block_m), splits)
    _centred_gram_kernel[grid](z, mean, partial, M, N, stride_m, stride_n, _GRAM_SPLIT_FEATURES,
                               CENTRE_COLS=gram_on_rows, **_GRAM_TILES)
    return partial.sum(0)


def _centred_gram_backward_triton(z, mean, coef, s, gram_on_rows: bool) -> torch.Tensor:
    M, N, stride_m, stride_n = _centred_view(z, gram_on_rows)
    dz = _backend.new_output(z.shape, dtype=z.dtype, device=z.device)
    dstride_m, dstride_n = (dz.stride(0), dz.stride(1)) if gram_on_rows else (dz.stride(1), dz.stride(0))
    grid = (triton.cdiv(M, _GRAM_BACKWARD_TILES["BLOCK_M"]), triton.cdiv(N, _GRAM_BACKWARD_TILES["BLOCK_N"]))
    _centred_gram_backward_kernel[grid](z, mean, coef, s.contiguous(), dz, M, N, stride_m, stride_n,
                                        dstride_m, dstride_n, CENTRE_COLS=gram_on_rows, **_GRAM_BACKWARD_TILES)
    return dz


# ----------------------------------------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------------------------------------
class _CentredGram(torch.autograd.Function):
    """z [B, d] -> (var [d] fp32 unbiased, K [m, m] fp32 Gram matrix of Zc on its smaller side m = min(B, d))."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, use_triton: bool):
        B, d = z.shape
        gram_on_rows = B < d
        if use_triton:
            mean, var = _column_stats_triton(z)
            gram = _centred_gram_triton(z, mean, gram_on_rows)
        else:
            with torch.autocast(z.device.type, enabled=False):  # autocast would run the Gram matmul in bf16
                z32 = z.float()
                mean = z32.mean(0)
                zc = z32 - mean
                var = zc.square().sum(0) / (B - 1)  # torch.var_mean along dim 0 is ~10x slower on the CPU
                gram = zc @ zc.T if gram_on_rows else zc.T @ zc
        ctx.save_for_backward(z, mean)
        ctx.use_triton, ctx.gram_on_rows = use_triton, gram_on_rows
        return var, gram

    @staticmethod
    def backward(ctx, dvar: torch.Tensor, dgram: torch.Tensor):
        z, mean = ctx.saved_tensors
        B = z.shape[0]
        coef = dvar.float() * (2.0 / (B - 1))
        s = dgram.float() + dgram.float().T
        if ctx.gram_on_rows:
            s = s - s.mean(0, keepdim=True)  # P S: the centring's derivative, applied on the small B x B side
        if ctx.use_triton:
            return _centred_gram_backward_triton(z, mean, coef, s, ctx.gram_on_rows), None
        with torch.autocast(z.device.type, enabled=False):
            zc = z.float() - mean
            dz = torch.addmm(zc * coef, s, zc) if ctx.gram_on_rows else torch.addmm(zc * coef, zc, s)
        return dz.to(z.dtype), None


def _check_shape(z: torch.Tensor) -> None:
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"informative_loss: z must be [B, d] with B >= 2 (unbiased variance), got {list(z.shape)}")


def informative_loss(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4, var_weight: float = 25.0,
                     cov_weight: float = 1.0, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(var_loss, cov_loss) of z [B, d], each already multiplied by its weight; fp32 scalars. See the module
    docstring for the math; autograd flows to z through a backward that never builds the d x d matrix."""
    _check_shape(z)
    B, d = z.shape
    var, gram = _CentredGram.apply(z, _backend.use_triton("informative_loss", z, backend))
    var_loss = var_weight * torch.relu(gamma - torch.sqrt(var + eps)).mean()
    if B < d:  # ||C||_F^2 from the B x B Gram matrix, minus C's diagonal (the variances)
        off_diagonal_sq = gram.square().sum() / (B - 1) ** 2 - var.square().sum()
    else:  # gram = (B - 1) C: drop its own diagonal, which avoids the cancellation when B >> d
        off_diagonal_sq = (gram - torch.diag_embed(gram.diagonal())).square().sum() / (B - 1) ** 2
    cov_loss = cov_weight / d * off_diagonal_sq
    return var_loss, cov_loss


def informative_loss_ref(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4, var_weight: float = 25.0,
                         cov_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook formula that public code (VICReg, lightly, MultiTrain) runs: builds C [d, d], in z's dtype."""
    B, d = z.shape
    zc = z - z.mean(0)
    std = torch.sqrt(zc.var(0) + eps)
    var_loss = var_weight * torch.relu(gamma - std).mean()
    cov = zc.T @ zc / (B - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    cov_loss = cov_weight * off_diagonal.square().sum() / d
    return var_loss, cov_loss


# ----------------------------------------------------------------------------------------------------------
# Distributed gather
# ----------------------------------------------------------------------------------------------------------
class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor):
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=z.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([z.shape[0]], dtype=torch.long, device=z.device))
        sizes = [int(s) for s in sizes]
        # all_gather needs equal shapes (gloo insists): pad every rank to the largest, then trim.
        padded = z.new_zeros((max(sizes), *z.shape[1:]))
        padded[:z.shape[0]] = z
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        rank = dist.get_rank()
        ctx.rows = (sum(sizes[:rank]), sum(sizes[:rank + 1]))
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, end = ctx.rows
        return grad[start:end]


def compile_variants(dtype: torch.dtype) -> list[tuple[str, object, dict, dict]]:
    """(name, kernel, {argument: Triton type}, constexprs) of each kernel as the launchers call it for `dtype`
    inputs (the Gram on the rows, B < d, as at MultiTrain's sizes): what `dalitrain info kernels` compiles."""
    element = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}[dtype]
    types = {"z_ptr": element, "dz_ptr": element, "mean_ptr": "*fp32", "var_ptr": "*fp32", "partial_ptr": "*fp32",
             "coef_ptr": "*fp32", "s_ptr": "*fp32"}
    return [("informative_loss.column_stats", _column_stats_kernel, types, _STATS_TILES),
            ("informative_loss.centred_gram", _centred_gram_kernel, types, dict(CENTRE_COLS=True, **_GRAM_TILES)),
            ("informative_loss.centred_gram_backward", _centred_gram_backward_kernel, types,
             dict(CENTRE_COLS=True, **_GRAM_BACKWARD_TILES))]


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows of z from every rank, concatenated in rank order ([sum of B_r, ...]); z itself when torch.distributed
    is not initialised. Ranks may hold different numbers of rows.

    Gradient: the backward SUMS the gathered gradient over ranks and returns this rank's slice. Every rank computes
    the loss on the same gathered batch, so each rank's gradient holds d(loss)/d(own rows) and DDP then AVERAGES
    parameter gradients over the W ranks; the sum (W times the identical per-rank gradient) cancels that 1/W, so
    W ranks with B/W rows each produce, after DDP, the parameter gradients of one rank with all B rows. (The
    gradient w.r.t. z itself is therefore W times d(loss)/dz; with per-rank losses that differ, the sum is the
    gradient of their total, which DDP turns into the gradient of their mean.)
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return _GatherRows.apply(z)
