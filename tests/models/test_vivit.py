"""ViViT factorised encoder: published size, hand-counted parameters and MACs, gradients, pooling, token layout."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dalitrain.models.pretrained import load_pretrained
from dalitrain.models.registry import create_backbone
from dalitrain.models.vivit import ViViT, ViViTConfig


def within(value, target, tolerance=0.03):
    return abs(value - target) <= tolerance * target


def count(name, frames, size, **kwargs):
    """(params, MACs) of one clip, built and run on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = create_backbone(name, attention_impl="explicit", **kwargs)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.empty(1, 3, frames, size, size, device="meta"))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def by_hand(dim, depth, mlp, temporal_depth, frames, size, tubelet):
    """(params, MACs) of a ViViT FE written out from the architecture, not from the code."""
    t, p, _ = tubelet
    frame_tokens, patches = frames // t, (size // p) ** 2
    block_params = (2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim)  # norm1, qkv, proj
                    + 2 * dim + (dim * mlp + mlp) + (mlp * dim + dim))  # norm2, fc1, fc2
    params = (dim * 3 * t * p * p + dim  # tubelet Conv3D
              + dim + (1 + patches) * dim + depth * block_params + 2 * dim  # spatial: cls, pos, blocks, norm
              + dim + (1 + frame_tokens) * dim + temporal_depth * block_params + 2 * dim)  # temporal

    def block_macs(tokens):  # qkv, proj, MLP; q k^T and attn v over all heads
        return tokens * (3 * dim * dim + dim * dim + 2 * dim * mlp) + 2 * tokens * tokens * dim

    macs = (frame_tokens * patches * dim * 3 * t * p * p
            + frame_tokens * depth * block_macs(1 + patches)
            + temporal_depth * block_macs(1 + frame_tokens))
    return params, macs


def test_vivit_fe_b_matches_the_published_size():
    params, macs = count("vivit_fe_b", 32, 224)
    assert (params, macs) == by_hand(768, 12, 3072, 4, 32, 224, (2, 16, 16))
    assert within(params, 115.1e6), params  # ViViT paper, FE-B (its count includes a 400-class classifier)
    assert within(macs / 1e9, 284.4), macs


@pytest.mark.parametrize("name, dim, depth, mlp", [("vivit_fe_l", 1024, 24, 4096), ("vivit_fe_h", 1280, 32, 5120)])
def test_the_larger_sizes_and_a_scenic_temporal_depth(name, dim, depth, mlp):
    for temporal_depth in (4, 24):
        params, macs = count(name, 8, 224, num_frames=8, temporal_depth=temporal_depth)
        assert (params, macs) == by_hand(dim, depth, mlp, temporal_depth, 8, 224, (2, 16, 16))


def test_the_tiny_demo_model_counts_what_its_architecture_says():
    # with the ViViT tubelet embedding; the demo's conv stem (layers.ConvStem) replaces only that first term
    assert count("vivit_fe_tiny", 8, 64, stem="tubelet") == by_hand(96, 4, 384, 2, 8, 64, (2, 8, 8))


def tiny(**kwargs):
    torch.manual_seed(0)
    return create_backbone("vivit_fe_tiny", **kwargs)


def test_forward_and_backward_reach_every_parameter():
    model = tiny(drop_path_rate=0.1).train()
    out = model(torch.randn(2, 3, 8, 64, 64))
    assert out.shape == (2, model.embed_dim) == (2, 96)
    out.square().sum().backward()
    for name, param in model.named_parameters():  # the temporal CLS too: prepended even when pooling by mean
        assert param.grad is not None and param.grad.abs().sum() > 0 and param.grad.isfinite().all(), name


def test_activation_checkpointing_gives_the_same_gradients():
    video = torch.randn(2, 3, 8, 64, 64)
    grads = []
    for enabled in (False, True):
        model = tiny(activation_checkpointing=enabled)
        model(video).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6 * grad.abs().max().item(), msg=name)


def test_fused_and_explicit_attention_compute_the_same_model():
    fused, explicit = tiny(attention_impl="fused"), tiny(attention_impl="explicit")
    explicit.load_state_dict(fused.state_dict())
    video = torch.randn(2, 3, 8, 64, 64)
    out_f, out_e = fused(video), explicit(video)
    torch.testing.assert_close(out_f, out_e, rtol=1e-5, atol=1e-5)
    out_f.square().sum().backward()
    out_e.square().sum().backward()
    for (name, p_f), p_e in zip(fused.named_parameters(), explicit.parameters()):  # float32 summation order only
        torch.testing.assert_close(p_f.grad, p_e.grad, rtol=1e-4, atol=1e-5 * p_e.grad.abs().max().item(), msg=name)


def test_mean_pool_averages_the_frame_tokens_and_cls_pool_takes_the_temporal_cls():
    mean_model, cls_model = tiny(temporal_pool="mean").eval(), tiny(temporal_pool="cls").eval()
    cls_model.load_state_dict(mean_model.state_dict())  # the same keys whichever pool
    video = torch.randn(2, 3, 8, 64, 64)
    for model, pool in ((mean_model, lambda x: x[:, 1:].mean(dim=1)), (cls_model, lambda x: x[:, 0])):
        normed = []
        hook = model.temporal.norm.register_forward_hook(lambda _m, _i, out: normed.append(out))
        out = model(video)
        hook.remove()
        assert normed[0].shape == (2, 1 + 4, 96)  # temporal CLS + t' = 8 / 2 frame tokens
        torch.testing.assert_close(out, pool(normed[0]), rtol=0, atol=0)
    assert not torch.allclose(mean_model(video), cls_model(video))


def test_forward_is_the_temporal_transformer_on_the_frame_features():
    model = tiny().eval()
    video = torch.randn(2, 3, 8, 64, 64)
    frames = model.frame_features(video)
    assert frames.shape == (2, 4, 96)
    torch.testing.assert_close(model.temporal(frames), model(video), rtol=0, atol=0)


def test_feature_map_puts_each_patch_token_on_its_grid_cell():
    """Without blocks, a token depends on its own tubelet only: change one tubelet, one cell of the map moves."""
    torch.manual_seed(0)
    model = ViViT(ViViTConfig(embed_dim=32, depth=0, num_heads=4, mlp_dim=64, temporal_depth=1, tubelet=(2, 8, 8),
                              num_frames=8, crop_size=64)).eval()
    video = torch.randn(1, 3, 8, 64, 64)
    changed = video.clone()
    changed[:, :, 2:4, 16:24, 40:48] += 1.0  # tubelet (t'=1, h=2, w=5)
    before, after = model.features(video)[1], model.features(changed)[1]
    assert before.shape == (1, 32, 4, 8, 8)
    moved = (after - before).abs().sum(dim=1)[0]  # [t', h, w]
    assert moved[1, 2, 5] > 0
    moved[1, 2, 5] = 0
    assert moved.max() == 0


def test_feature_map_and_stages_of_the_tiny_model():
    model = tiny().eval()
    video = torch.randn(2, 3, 8, 64, 64)
    assert model.features(video)[1].shape == (2, 96, 4, 8, 8)
    outputs = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: outputs.append(out.shape))
             for _, module in model.stages()]
    model(video)
    for hook in hooks:
        hook.remove()
    assert [name for name, _ in model.stages()] == ["spatial", "temporal"]
    assert outputs == [(2 * 4, 1 + 64, 96), (2, 1 + 4, 96)]


def test_no_weight_decay_names_the_tokens_and_position_embeddings():
    model = tiny()
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"spatial.cls_token", "spatial.pos_embed", "temporal.cls_token",
                                       "temporal.pos_embed"}
    assert names["spatial.pos_embed"].shape == (1, 1 + 64, 96)
    assert names["temporal.pos_embed"].shape == (1, 1 + 4, 96)


def test_drop_path_rises_linearly_over_each_transformer():
    with torch.device("meta"):
        model = create_backbone("vivit_fe_b", drop_path_rate=0.22)
    spatial = [block.drop_path.p for block in model.spatial.blocks]
    temporal = [block.drop_path.p for block in model.temporal.blocks]
    assert spatial == pytest.approx([0.02 * i for i in range(12)])
    assert temporal == pytest.approx([0.0, 0.22 / 3, 0.44 / 3, 0.22])


def test_a_clip_of_another_size_is_refused_in_one_line():
    model = tiny()
    for shape, text in (((1, 3, 6, 64, 64), "3 frame tokens (6 frames), but the temporal position embeddings "
                                            "are sized for 4 (8 frames"),
                        ((1, 3, 8, 48, 48), "gives a 6x6 patch grid, but the spatial position embeddings are sized "
                                            "for 8x8")):
        with pytest.raises(ValueError) as err:
            model(torch.randn(shape))
        assert text in str(err.value) and "\n" not in str(err.value)


def test_factory_options_and_bad_configs():
    assert len(tiny(temporal_depth=3).temporal.blocks) == 3
    model = tiny(num_frames=16, crop_size=32)
    assert model.config.num_frames == 16 and model.spatial.grid == (4, 4) and model.temporal.num_tokens == 8
    assert model(torch.randn(1, 3, 16, 32, 32)).shape == (1, 96)
    with pytest.raises(ValueError, match="model.arch_options: ViViTConfig has no field 'depths'"):
        tiny(depths=3)
    with pytest.raises(ValueError, match="does not split into 2x8x8 tubelets"):
        tiny(num_frames=7)
    with pytest.raises(ValueError, match="temporal_pool"):
        tiny(temporal_pool="max")


def test_a_dalitrain_checkpoint_round_trips(tmp_path):
    source, target = tiny(), create_backbone("vivit_fe_tiny")
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    report = load_pretrained(target, path)
    assert report.layout == "dalitrain"
    video = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(target.eval()(video), source.eval()(video), rtol=0, atol=0)
