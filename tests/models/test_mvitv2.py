"""MViTv2: published sizes, an independent MAC count, gradients, batch invariance, checkpointing."""
import pytest
import torch

from dalitrain.models.info import describe_model
from dalitrain.models.registry import create_backbone


def within(value, target, tolerance=0.03):
    return abs(value - target) <= tolerance * target


def test_mvitv2_s_16x4_matches_the_published_size():
    info = describe_model("mvitv2_s_16x4", num_frames=16, crop_size=224)
    assert within(info["params"], 34.5e6), info["params"]
    assert within(info["gmacs"], 64.0), info["gmacs"]


def test_mvitv2_b_32x3_matches_the_published_size_and_multitrain_stage_shapes():
    info = describe_model("mvitv2_b_32x3", num_frames=32, crop_size=224)
    assert within(info["params"], 51.2e6), info["params"]
    assert within(info["gmacs"], 225.0), info["gmacs"]
    assert [s["shape"] for s in info["stages"]] == [[96, 16, 56, 56], [192, 16, 28, 28], [384, 16, 14, 14],
                                                    [768, 16, 7, 7]]


def tiny_macs_by_hand() -> int:
    """MACs of mvitv2_tiny on one 8x64x64 clip, written out from the architecture (not from the code)."""
    grid_tokens = 4 * 16 * 16  # stem stride 2x4x4, padding keeps T/2, H/4, W/4
    # conv stem: 1x3x3 conv 3 -> 32 on 8x32x32, 3x3x3 conv 32 -> 64 on 4x16x16, 1x1x1 64 -> 48 (norms not counted)
    macs = 8 * 32 * 32 * 32 * 3 * 3 * 3 + grid_tokens * 64 * 32 * 3 * 3 * 3 + grid_tokens * 48 * 64
    # (dim_in, dim_out, query tokens, key/value tokens). Each stage's first block pools the query 1x2x2 and
    # divides the K/V stride (1x4x4 at the start, never below 1) by 1x2x2, both applied to its input grid:
    # 4x16x16 -> q 4x16x16, kv 4x4x4 | 4x16x16 -> q 4x8x8, kv 4x8x8 (stride 1x2x2)
    # | 4x8x8 -> q 4x4x4, kv 4x8x8 (stride 1) | 4x4x4 -> q 4x2x2, kv 4x4x4.
    blocks = [(48, 48, 1024, 64), (48, 96, 256, 256), (96, 192, 64, 256), (192, 384, 16, 64)]
    tokens_in = grid_tokens
    for dim_in, dim_out, lq, lkv in blocks:
        macs += tokens_in * dim_in * 3 * dim_out  # qkv
        macs += (lq + 2 * lkv) * dim_out * 27  # depthwise 3x3x3 pooling of q, k, v (all heads)
        macs += 2 * lq * lkv * dim_out  # q k^T and attn v, summed over heads
        macs += lq * dim_out * dim_out  # attention output projection
        macs += tokens_in * dim_in * dim_out if dim_in != dim_out else 0  # shortcut projection, before its pool
        macs += 2 * lq * dim_out * 4 * dim_out  # MLP
        tokens_in = lq
    return macs


def test_the_flop_counter_counts_every_matmul_conv_and_attention():
    info = describe_model("mvitv2_tiny", num_frames=8, crop_size=64)
    assert info["gmacs"] * 1e9 == pytest.approx(tiny_macs_by_hand(), rel=1e-9)


def tiny(**kwargs):
    torch.manual_seed(0)
    return create_backbone("mvitv2_tiny", **kwargs)


@pytest.mark.parametrize("frames, size", [(8, 64), (7, 61), (16, 50), (3, 33)])
def test_the_conv_stem_reaches_the_patch_embeddings_token_grid(frames, size):
    video = torch.randn(1, 3, frames, size, size)
    grids = []
    for stem in ("patch", "conv"):
        model = create_backbone("mvitv2_tiny", stem=stem, num_frames=frames, crop_size=size)
        grid = tuple(model.patch_embed(video).shape[2:])
        assert grid == model.input_grid
        grids.append(grid)
    assert grids[0] == grids[1] == tuple(-(-n // s) for n, s in zip((frames, size, size), (2, 4, 4)))


def test_the_conv_stem_refuses_a_stride_it_cannot_reach():
    from dalitrain.models.mvitv2 import MViTv2, MViTv2Config
    with pytest.raises(ValueError, match=r"conv stem needs a patch stride \(1 or 2, 4, 4\), got \(2, 8, 8\)"):
        MViTv2(MViTv2Config(stem="conv", patch_stride=(2, 8, 8)))


def test_fused_and_explicit_attention_compute_the_same_model():
    fused, explicit = tiny(attention_impl="fused").eval(), tiny(attention_impl="explicit").eval()
    explicit.load_state_dict(fused.state_dict())
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(video), explicit(video), rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter():
    model = tiny(drop_path_rate=0.0).train()
    model(torch.randn(2, 3, 8, 64, 64)).square().mean().backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_output_is_invariant_to_batch_composition():
    model = tiny().eval()
    video = torch.randn(3, 3, 8, 64, 64)
    with torch.no_grad():
        together = model(video)
        alone = torch.cat([model(video[i:i + 1]) for i in range(3)])
        permuted = model(video[[2, 0, 1]])
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(permuted, together[[2, 0, 1]], rtol=1e-4, atol=1e-5)


def test_checkpointed_and_plain_blocks_give_the_same_gradients():
    """With stochastic depth on, so that recomputation must replay the same random drops."""
    plain = tiny(drop_path_rate=0.5).train()
    checkpointed = tiny(drop_path_rate=0.5, activation_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    video = torch.randn(4, 3, 8, 64, 64)
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        model(video).square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_forward_stays_close_to_float32():
    model = tiny().eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        reference = model(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(video)
    assert torch.isfinite(low).all()
    assert torch.nn.functional.cosine_similarity(low.float(), reference).min() > 0.99


def test_a_clip_of_another_size_is_refused_with_the_expected_grid():
    with pytest.raises(ValueError, match=r"\(4, 8, 8\) token grid.*sized for \(4, 16, 16\)"):
        tiny()(torch.randn(1, 3, 8, 32, 32))


def test_torch_compile_traces_the_model():
    model = tiny().eval()
    video = torch.randn(1, 3, 8, 64, 64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(video), model(video), rtol=1e-4, atol=1e-5)


def test_every_linear_and_convolution_starts_trunc_normal_002_as_pyslowfast():
    torch.manual_seed(0)
    model = create_backbone("mvitv2_s_16x4", num_frames=4, crop_size=64)
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv3d)):
            w = module.weight.detach()
            # torch's trunc_normal_ cuts at +-2 absolute, so at std 0.02 it is a plain normal; PyTorch's default
            # for the 3x3x3 depthwise pooling (fan-in 27) would have std 0.11
            if w.numel() >= 1000:
                assert 0.018 < w.std().item() < 0.022, name
            if module.bias is not None:
                assert torch.all(module.bias == 0), name
