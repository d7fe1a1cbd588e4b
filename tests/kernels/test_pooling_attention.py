import pytest
import torch

from dalitrain.kernels import pooling_attention as pooling_attention_module
from dalitrain.kernels.pooling_attention import pooling_attention, pooling_attention_ref

DTYPES = [torch.float32, torch.float16]
# (B, h, Lq, Lkv, dh): the odd case; several query/key tiles with partial ones (and a split dK/dV query
# loop); more keys than queries; single query and key with a head dim below the 16-wide minimum tile.
SHAPES = [(1, 1, 37, 13, 96), (2, 2, 150, 45, 40), (1, 3, 5, 70, 24), (2, 1, 1, 1, 8)]


def _inputs(rng, shape, dtype, with_residual, strided=False):
    B, h, Lq, Lkv, dh = shape

    def rand(L):
        if strided:  # [B, L, h, dh] seen as [B, h, L, dh]: the layout of a head split without .contiguous()
            return torch.randn(B, L, h, dh, generator=rng, dtype=torch.float64).transpose(1, 2)
        return torch.randn(B, h, L, dh, generator=rng, dtype=torch.float64)

    tensors = [rand(Lq), rand(Lkv), rand(Lkv), rand(Lq) if with_residual else None]
    return [None if t is None else t.to(dtype) for t in tensors]


def _output_and_grads(fn, tensors, dout):
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    out.backward(dout.to(out.dtype))
    return [out] + [t.grad for t in leaves if t is not None]


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_float64_reference(backend, dtype, with_residual, shape, rng, assert_close_to_exact,
                                   poisoned_outputs):
    tensors = _inputs(rng, shape, dtype, with_residual, strided=shape[1] > 1)
    dout = torch.randn(tensors[0].shape, generator=rng, dtype=torch.float64)
    scale = 0.3 if shape[-1] == 40 else None  # one case with an explicit scale

    def ours(q, k, v, residual):
        return pooling_attention(q, k, v, residual=residual, scale=scale, backend=backend)

    def reference(q, k, v, residual):
        return pooling_attention_ref(q, k, v, residual=residual, scale=scale)

    results = _output_and_grads(ours, tensors, dout)
    torch_at_dtype = _output_and_grads(reference, tensors, dout)
    exact = _output_and_grads(reference, [None if t is None else t.double() for t in tensors], dout)
    for name, a, t, e in zip(("out", "dq", "dk", "dv", "dresidual"), results, torch_at_dtype, exact):
        assert a.dtype == dtype and a.shape == e.shape, name
        assert_close_to_exact(name, a, t, e, dtype)
    assert (len(poisoned_outputs) > 0) == (backend == "triton")


@pytest.mark.parametrize("with_residual", [True, False])
def test_triton_forward_without_grad(with_residual, rng):
    q, k, v, residual = _inputs(rng, (1, 2, 37, 13, 96), torch.float32, with_residual)
    with torch.no_grad():
        out = pooling_attention(q, k, v, residual=residual, backend="triton")
    exact = pooling_attention_ref(q.double(), k.double(), v.double(),
                                  residual=None if residual is None else residual.double())
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)


def test_reference_gradcheck(rng):
    tensors = [torch.randn(1, 2, L, 5, generator=rng, dtype=torch.float64, requires_grad=True) for L in (4, 3, 3, 4)]
    assert torch.autograd.gradcheck(lambda q, k, v, r: pooling_attention_ref(q, k, v, residual=r), tensors)


def test_bad_inputs_have_one_line_errors():
    q, kv = torch.ones(1, 2, 5, 8), torch.ones(1, 2, 3, 8)
    with pytest.raises(ValueError, match=r"must share B, h, dh"):
        pooling_attention(q, torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"must share B, h, dh with Lq, Lkv >= 1"):
        pooling_attention(q, torch.ones(1, 2, 0, 8), torch.ones(1, 2, 0, 8))
    with pytest.raises(ValueError, match=r"q must be \[B, h, Lq, dh\]"):
        pooling_attention(q[0], kv, kv)
    with pytest.raises(ValueError, match=r"residual \[1, 2, 3, 8\] must have q's shape"):
        pooling_attention(q, kv, kv, residual=kv)
    with pytest.raises(ValueError, match=r"share one dtype"):
        pooling_attention(q, kv.half(), kv.half())
    with pytest.raises(ValueError, match=r"backend must be 'auto', 'triton' or 'torch', got 'flash'"):
        pooling_attention(q, kv, kv, backend="flash")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernels_match_reference(dtype, rng):
    tensors = [t.cuda() for t in _inputs(rng, (2, 1, 3136, 392, 96), torch.float64, True)]
    dout = torch.randn(tensors[0].shape, generator=rng, dtype=torch.float64).cuda()
    exact = _output_and_grads(lambda q, k, v, r: pooling_attention_ref(q, k, v, residual=r), tensors, dout)
    ours = _output_and_grads(lambda q, k, v, r: pooling_attention(q, k, v, residual=r),
                             [t.to(dtype) for t in tensors], dout)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for a, e in zip(ours, exact):
        assert (a.double() - e).abs().max().item() <= tol * (1.0 + e.abs().max().item())


def test_kernels_compile_for_cuda(compiles_for_cuda):
    compiles_for_cuda("""
from dalitrain.kernels import pooling_attention as m
types = {name: "*fp16" for name in ("q_ptr", "k_ptr", "v_ptr", "res_ptr", "out_ptr", "attn_ptr", "do_ptr", "dq_ptr")}
types.update({name: "*fp32" for name in ("lse_ptr", "delta_ptr", "dk_ptr", "dv_ptr")})
types.update(qk_scale="fp32", scale="fp32")
tiles = dict(PRECISION="tf32", BLOCK_M=m.BLOCK_M, BLOCK_N=m.BLOCK_N, DH_PAD=128)
compile_for_sm90(m._forward_kernel, types, HAS_RESIDUAL=True, STORE_ATTN=True, **tiles)
compile_for_sm90(m._backward_dq_kernel, types, **tiles)
compile_for_sm90(m._backward_dkdv_kernel, types, **tiles)
""")


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_residual_is_q_as_mvitv2_calls_it(backend, rng):
    """MViTv2's residual pooling adds the pooled q itself: its gradient is dq plus dout."""
    q64, k64, v64 = (torch.randn(1, 2, L, 96, generator=rng, dtype=torch.float64) for L in (37, 13, 13))
    grads = []
    for fn, dtype in ((lambda q, k, v: pooling_attention(q, k, v, residual=q, scale=0.2, backend=backend),
                       torch.float32),
                      (lambda q, k, v: pooling_attention_ref(q, k, v, residual=q, scale=0.2), torch.float64)):
        leaves = [t.to(dtype).requires_grad_() for t in (q64, k64, v64)]
        fn(*leaves).square().sum().backward()
        grads.append([t.grad.double() for t in leaves])
    for ours, exact in zip(*grads):
        torch.testing.assert_close(ours, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
def test_the_kernel_receives_the_autocast_dtype(monkeypatch, autocast_dtype, rng):
    """fp32 q, k, v, residual (what a LayerNorm returns under CUDA autocast) reach the kernel in autocast's dtype."""
    received = []

    def record(q, k, v, residual, scale):
        received.extend(t.dtype for t in (q, k, v, residual))
        return torch.zeros_like(q)

    monkeypatch.setattr(pooling_attention_module._PoolingAttention, "apply", record)
    q, k, v = (torch.randn(1, 2, L, 16, generator=rng) for L in (9, 5, 5))
    with torch.autocast("cpu", dtype=autocast_dtype):
        out = pooling_attention(q, k, v, residual=q, backend="triton")
    assert received == [autocast_dtype] * 4 and out.dtype == autocast_dtype
    received.clear()
    pooling_attention(q, k, v, residual=q, backend="triton")  # outside autocast: untouched
    assert received == [torch.float32] * 4
