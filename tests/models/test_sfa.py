"""SFA-ViViT's model parts: the adapter, the frozen spatial transformer, chunking, and starting from a checkpoint."""
import numpy as np
import pytest
import torch

from dalitrain.config import ModelConfig
from dalitrain.models import build_model, create_backbone, init_from_checkpoint
from dalitrain.models.pretrained import CheckpointError


def clip(frames=8, batch=2, seed=0):
    return torch.randn(batch, 3, frames, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stem", ["conv", "tubelet"])
@pytest.mark.parametrize("frames,chunk", [(16, 4), (10, 4), (12, 6)])
def test_chunked_spatial_equals_the_whole_clip(stem, frames, chunk):
    torch.manual_seed(0)
    model = create_backbone("vivit_fe_tiny", num_frames=16, stem=stem).eval()
    video = clip(frames)
    with torch.no_grad():
        whole = model.spatial(video)
        chunked = model.spatial(video, chunk_frames=chunk)
    assert chunked.shape == whole.shape == (2, frames // 2, 96)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_conv_stem_chunks_need_their_halo():
    """Without the halo the conv stem's 3-frame kernel sees zeros at each cut: the test above could fail."""
    torch.manual_seed(0)
    model = create_backbone("vivit_fe_tiny", num_frames=16).eval()
    video = clip(16)
    with torch.no_grad():
        whole = model.spatial(video)
        model.spatial.patch_embed.temporal_halo = 0
        cut = model.spatial(video, chunk_frames=4)
    assert (cut - whole).abs().max() > 1e-3


def test_residual_adapter_starts_as_the_identity():
    torch.manual_seed(0)
    plain = create_backbone("vivit_fe_tiny").eval()
    with_adapter = create_backbone("vivit_fe_tiny", adapter="mlp").eval()
    own = with_adapter.state_dict()
    assert any(k.startswith("adapter.") for k in own)
    with_adapter.load_state_dict({**own, **plain.state_dict()})  # same transformers, the adapter as initialised
    video = clip()
    with torch.no_grad():
        torch.testing.assert_close(with_adapter(video), plain(video), rtol=0, atol=0)
        literal = create_backbone("vivit_fe_tiny", adapter="mlp", adapter_residual=False).eval()
        literal.load_state_dict({**literal.state_dict(), **plain.state_dict()})
        assert (literal(video) - plain(video)).abs().max() > 1e-3  # the literal MLP changes the features


def test_frozen_spatial_keeps_no_gradient_and_stays_in_eval_mode():
    torch.manual_seed(0)
    model = create_backbone("vivit_fe_tiny", adapter="mlp", drop_path_rate=0.5, frozen_chunk_frames=4)
    model.freeze(["spatial"])
    model.train()
    assert not model.spatial.training and model.temporal.training and model.adapter.training
    assert not any(p.requires_grad for p in model.spatial.parameters())
    model(clip()).square().sum().backward()
    assert all(p.grad is None for p in model.spatial.parameters())
    assert model.adapter.mlp.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.temporal.parameters())
    # eval mode: drop-path (0.5 here) no longer draws, so the frozen features are the same twice
    with torch.no_grad():
        first, second = model.frame_features(clip()), model.frame_features(clip())
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no module group 'temporal'"):
        model.freeze(["temporal"])


def test_frozen_spatial_saves_no_activations():
    """What autograd keeps for backward: the frozen model's share does not grow with the spatial transformer."""
    def saved_bytes(model, frames):
        sizes = []

        def pack(tensor):
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(clip(frames, batch=1)).sum()
        return sum(sizes)

    torch.manual_seed(0)
    full = create_backbone("vivit_fe_tiny", num_frames=16, adapter="mlp")
    frozen = create_backbone("vivit_fe_tiny", num_frames=16, adapter="mlp")
    frozen.freeze(["spatial"])
    assert saved_bytes(frozen, 16) * 20 < saved_bytes(full, 16)


def test_temporal_position_table_resizes_as_scenic():
    """1-D linear interpolation with the ends aligned (scipy.ndimage.zoom, order 1), the CLS row kept."""
    torch.manual_seed(0)
    short = create_backbone("vivit_fe_tiny", num_frames=8)  # 4 temporal tokens
    long = create_backbone("vivit_fe_tiny", num_frames=20)  # 10
    table = short.temporal.pos_embed.detach()
    resized = long.resize_weight("temporal.pos_embed", table)
    assert resized.shape == long.temporal.pos_embed.shape == (1, 11, 96)
    torch.testing.assert_close(resized[:, 0], table[:, 0], rtol=0, atol=0)
    old = table[0, 1:].numpy()
    positions = np.linspace(0, 3, 10)  # the aligned ends: token 0 -> 0, token 9 -> 3
    expected = np.stack([np.interp(positions, np.arange(4), old[:, d]) for d in range(96)], axis=1)
    np.testing.assert_allclose(resized[0, 1:].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert long.resize_weight("temporal.blocks.0.norm1.weight", table) is None


def model_config(**changes) -> ModelConfig:
    return ModelConfig(arch="vivit_fe_tiny", head="linear", drop_path_rate=0.0, **changes)


def build(cfg: ModelConfig, frames: int):
    torch.manual_seed(1)
    return build_model(cfg, num_classes=[3, 5], num_frames=frames, crop_size=64)


@pytest.fixture()
def stage1_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build(model_config(), 8)
    path = tmp_path / "stage1.pt"
    torch.save({"model": model.state_dict(), "config": {"model": {"arch": "vivit_fe_tiny"}}}, path)
    return path, model


def test_init_from_resizes_loads_everything_and_skips_the_adapter(stage1_checkpoint):
    path, stage1 = stage1_checkpoint
    cfg = model_config(init_from=str(path), init_skip=["backbone.adapter"], freeze=["spatial"], adapter="mlp")
    stage2 = build(cfg, 16)
    report = init_from_checkpoint(stage2, cfg)
    assert report.resized == ["backbone.temporal.pos_embed"]
    assert report.skipped == [k for k in stage2.state_dict() if k.startswith("backbone.adapter.")] != []
    for key, value in stage1.state_dict().items():
        if key != "backbone.temporal.pos_embed":
            torch.testing.assert_close(stage2.state_dict()[key], value, rtol=0, atol=0)
    # the residual adapter is the identity, so at stage-1's clip length stage 2 computes stage 1's logits
    same_cfg = model_config(init_from=str(path), init_skip=["backbone.adapter"], adapter="mlp")
    same_length = build(same_cfg, 8)
    init_from_checkpoint(same_length, same_cfg)
    stage1.eval()
    same_length.eval()
    with torch.no_grad():
        for a, b in zip(stage1(clip()).logits, same_length(clip()).logits):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_init_from_refusals_are_one_line(stage1_checkpoint, tmp_path):
    path, _ = stage1_checkpoint
    cases = [
        (model_config(init_from=str(path), adapter="mlp"), "backbone.adapter.mlp.fc1.weight.*init_skip"),
        (model_config(init_from=str(tmp_path / "nowhere.pt")), "checkpoint not found"),
        (ModelConfig(arch="mvitv2_tiny", init_from=str(path)), "a vivit_fe_tiny checkpoint, but model.arch is "
                                                                "mvitv2_tiny"),
        (model_config(init_from=str(path), arch_options={"embed_dim": 64, "num_heads": 4, "mlp_dim": 128}),
         r"shape \(1, 1, 96\) in the checkpoint, \(1, 1, 64\)"),
    ]
    for cfg, message in cases:
        model = build(cfg, 8)
        with pytest.raises(CheckpointError, match=message) as err:
            init_from_checkpoint(model, cfg)
        assert "\n" not in str(err.value) and str(err.value).startswith(cfg.init_from)
    weights_only = tmp_path / "weights.pt"
    torch.save({"patch_embed.proj.weight": torch.zeros(1)}, weights_only)
    with pytest.raises(CheckpointError, match="not a dalitrain training checkpoint"):
        init_from_checkpoint(build(model_config(), 8), model_config(init_from=str(weights_only)))


def test_adapter_and_freeze_are_refused_where_the_backbone_has_no_split():
    with pytest.raises(ValueError, match="model.adapter: mlp: MViTv2 has no spatial and temporal"):
        build(ModelConfig(arch="mvitv2_tiny", adapter="mlp"), 8)
    with pytest.raises(ValueError, match="model.freeze: mvitv2_tiny names no module groups"):
        build(ModelConfig(arch="mvitv2_tiny", freeze=["spatial"]), 8)
