import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dalitrain.kernels.informative_loss import _CentredGram, gather_rows, informative_loss, informative_loss_ref

DTYPES = [torch.float32, torch.float16]
# B < d (Gram side), B > d (covariance side), B = 2, and d over several split-K slices of the Triton Gram kernel.
SHAPES = [(5, 37), (37, 13), (2, 96), (7, 1100)]
WEIGHTS = dict(gamma=1.3, eps=1e-4, var_weight=25.0, cov_weight=0.7)


def _random_z(rng, shape, dtype, scale=2.0, offset=3.0):
    return (torch.randn(shape, generator=rng, dtype=torch.float64) * scale + offset).to(dtype)


def _losses_and_grad(fn, z, upstream):
    """Both losses and dz for the upstream weights (w_var, w_cov), so each term's gradient is checked."""
    z = z.detach().clone().requires_grad_()
    var_loss, cov_loss = fn(z)
    (upstream[0] * var_loss + upstream[1] * cov_loss).backward()
    return var_loss, cov_loss, z.grad


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_float64_reference(backend, dtype, shape, rng, assert_close_to_exact, poisoned_outputs):
    z = _random_z(rng, shape, dtype)
    upstream = torch.rand(2, generator=rng, dtype=torch.float64) + 0.5
    ours = _losses_and_grad(lambda t: informative_loss(t, backend=backend, **WEIGHTS), z, upstream)
    torch_at_dtype = _losses_and_grad(lambda t: informative_loss_ref(t, **WEIGHTS), z, upstream)
    exact = _losses_and_grad(lambda t: informative_loss_ref(t, **WEIGHTS), z.double(), upstream)
    for name, a, t, e in zip(("var_loss", "cov_loss", "dz"), ours, torch_at_dtype, exact):
        assert_close_to_exact(name, a, t, e, dtype)
    assert ours[2].dtype == dtype and ours[0].dtype == torch.float32
    assert (len(poisoned_outputs) > 0) == (backend == "triton")


def test_reference_gradcheck(rng):
    z = torch.randn(4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: informative_loss_ref(t, **WEIGHTS), (z,))
    z = torch.randn(6, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: informative_loss_ref(t, **WEIGHTS), (z,))


def _assert_finite_and_close(z, backend, rel):
    var_loss, cov_loss, dz = _losses_and_grad(lambda t: informative_loss(t, backend=backend), z, (1.0, 1.0))
    exact = _losses_and_grad(informative_loss_ref, z.double(), (1.0, 1.0))
    for name, a, e in zip(("var_loss", "cov_loss", "dz"), (var_loss, cov_loss, dz), exact):
        assert torch.isfinite(a).all(), f"{name} is not finite"
        err = (a.double() - e).abs().max().item()
        assert err <= rel * (1.0 + e.abs().max().item()), f"{name}: error {err:.3g}"


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_two_rows(backend, rng):
    _assert_finite_and_close(_random_z(rng, (2, 33), torch.float32), backend, rel=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_constant_columns_have_finite_gradients(backend, rng):
    z = _random_z(rng, (6, 40), torch.float32)
    z[:, ::3] = 4.0  # zero variance: sqrt(0 + eps) is the std, relu is active, no division by zero
    _assert_finite_and_close(z, backend, rel=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_large_fp16_magnitudes(backend, rng):
    # Offset 3e4, spread 50: C_ij^2 ~ 1e6 overflows fp16 in the reference; dz (~ spread^3) stays inside fp16.
    z = _random_z(rng, (9, 70), torch.float16, scale=50.0, offset=30000.0)
    _, cov_fp16 = informative_loss_ref(z)
    assert not torch.isfinite(cov_fp16), "the fp16 reference was expected to overflow here"
    _assert_finite_and_close(z, backend, rel=1e-3)


def test_bad_inputs_have_one_line_errors():
    with pytest.raises(ValueError, match=r"B >= 2"):
        informative_loss(torch.ones(1, 8))
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        informative_loss(torch.ones(8))
    with pytest.raises(ValueError, match=r"backend must be 'auto', 'triton' or 'torch', got 'cuda'"):
        informative_loss(torch.ones(3, 8), backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernels_match_reference(dtype, rng):
    z = _random_z(rng, (64, 2048), torch.float64).to("cuda")
    exact = _losses_and_grad(informative_loss_ref, z, (1.0, 1.0))
    ours = _losses_and_grad(informative_loss, z.to(dtype), (1.0, 1.0))
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for a, e in zip(ours, exact):
        assert (a.double() - e).abs().max().item() <= tol * (1.0 + e.abs().max().item())


def test_gather_rows_is_identity_without_distributed():
    z = torch.randn(3, 4)
    assert gather_rows(z) is z


# 2 gloo ranks holding 4 and 3 of the 7 rows, through DDP, against 1 process holding all 7 rows.
_ROWS, _IN, _D = 7, 5, 11


def _model_and_inputs():
    torch.manual_seed(0)
    return torch.nn.Linear(_IN, _D).double(), torch.randn(_ROWS, _IN, dtype=torch.float64)


def _loss(z):
    var_loss, cov_loss = informative_loss(z, backend="torch")
    return var_loss + cov_loss


def _gather_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, x = _model_and_inputs()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        rows = torch.tensor_split(x, world)[rank]
        loss = _loss(gather_rows(ddp(rows)))
        loss.backward()  # DDP averages the parameter gradients over the ranks here
        torch.save({"loss": loss.detach(), "weight": model.weight.grad, "bias": model.bias.grad},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_rows_two_ranks_match_one_rank(tmp_path):
    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    model, x = _model_and_inputs()
    loss = _loss(model(x))
    loss.backward()
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(result["weight"], model.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(result["bias"], model.bias.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_triton", [False, True])
@pytest.mark.parametrize("shape", [(5, 37), (37, 13)])
def test_centred_gram_backward_for_any_upstream_gradient(use_triton, shape, rng):
    """The autograd node alone, with upstream gradients unrelated to the loss (the loss's own dK has zero row sums
    and would hide a missing centring term)."""
    z = _random_z(rng, shape, torch.float64)
    B, d = shape
    dvar = torch.randn(d, generator=rng, dtype=torch.float64)
    dgram = torch.randn(min(B, d), min(B, d), generator=rng, dtype=torch.float64)

    z32 = z.float().requires_grad_()
    var, gram = _CentredGram.apply(z32, use_triton)
    ((var * dvar).sum() + (gram * dgram).sum()).backward()

    z64 = z.clone().requires_grad_()
    zc = z64 - z64.mean(0)
    gram64 = zc @ zc.T if B < d else zc.T @ zc
    ((zc.var(0) * dvar).sum() + (gram64 * dgram).sum()).backward()
    torch.testing.assert_close(var.double(), zc.var(0).detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gram.double(), gram64.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-5, atol=1e-4)


def test_kernels_compile_for_cuda(compiles_for_cuda):
    compiles_for_cuda("""
from dalitrain.kernels import informative_loss as m
types = {"z_ptr": "*bf16", "dz_ptr": "*bf16", "mean_ptr": "*fp32", "var_ptr": "*fp32", "partial_ptr": "*fp32",
         "coef_ptr": "*fp32", "s_ptr": "*fp32"}
compile_for_sm90(m._column_stats_kernel, types, BLOCK_B=32, BLOCK_D=128)
for centre_cols in (True, False):
    compile_for_sm90(m._centred_gram_kernel, types, CENTRE_COLS=centre_cols, BLOCK_M=32, BLOCK_K=64)
    compile_for_sm90(m._centred_gram_backward_kernel, types, CENTRE_COLS=centre_cols, BLOCK_M=32, BLOCK_N=64,
                     BLOCK_K=32)
""")


def test_torch_path_stays_fp32_under_autocast(rng):
    """Autocast lowers matmuls to bf16; the Gram matrix (and its backward) must not follow: the loss under CPU
    autocast equals the fp32 one (an autocast bf16 Gram matrix is off by 0.1-0.2%)."""
    z = torch.randn(24, 40, generator=rng, requires_grad=True)
    plain = informative_loss(z, backend="torch")
    (grad_plain,) = torch.autograd.grad(sum(plain), z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = informative_loss(z, backend="torch")
        (grad_mixed,) = torch.autograd.grad(sum(mixed), z)
    for a, b in zip(mixed, plain):
        assert a.dtype == torch.float32 and torch.allclose(a, b, rtol=1e-6, atol=0), (a, b)
    torch.testing.assert_close(grad_mixed, grad_plain, rtol=1e-5, atol=1e-7)
