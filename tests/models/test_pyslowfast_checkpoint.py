"""Loading PySlowFast MViTv2 checkpoints: key mapping, dropped tables, resized embeddings, bad files."""
import pytest
import torch

from dalitrain.config import ModelConfig
from dalitrain.models import build_model
from dalitrain.models.pretrained import CheckpointError, load_pretrained
from dalitrain.models.registry import create_backbone


def pyslowfast_keys(depths=(1, 1, 1, 1)) -> list[str]:
    """The key names of PySlowFast's MViT (video_model_builder.MViT, attention.MultiScaleBlock) with a class
    token, separate absolute and relative position embeddings, written from its module layout."""
    keys = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed_spatial",
            "pos_embed_temporal", "pos_embed_class", "norm.weight", "norm.bias", "head.projection.weight",
            "head.projection.bias"]
    first_of_stage = {sum(depths[:s]) for s in range(1, len(depths))}
    for i in range(sum(depths)):
        block = [f"{m}.{p}" for m in ("norm1", "norm2", "mlp.fc1", "mlp.fc2", "attn.qkv", "attn.proj",
                                      "attn.norm_q", "attn.norm_k", "attn.norm_v") for p in ("weight", "bias")]
        block += ["attn.pool_q.weight", "attn.pool_k.weight", "attn.pool_v.weight", "attn.rel_pos_h",
                  "attn.rel_pos_w", "attn.rel_pos_t"]
        block += ["proj.weight", "proj.bias"] if i in first_of_stage else []
        keys += [f"blocks.{i}.{k}" for k in block]
    return keys


def synthetic_checkpoint(model, spatial_side: int, temporal: int) -> dict:
    """A PySlowFast training checkpoint whose tensors are random, saved from DistributedDataParallel."""
    own = model.state_dict()
    dim = model.config.embed_dim
    shapes = {"cls_token": (1, 1, dim), "pos_embed_class": (1, 1, dim), "pos_embed_spatial":
              (1, spatial_side ** 2, dim), "pos_embed_temporal": (1, temporal, dim),
              "head.projection.weight": (400, model.embed_dim), "head.projection.bias": (400,)}
    state = {f"module.{k}": torch.randn(shapes[k] if k in shapes else own[k].shape if k in own else (9, 48))
             for k in pyslowfast_keys()}
    return {"model_state": state, "optimizer_state": {}, "epoch": 200}


def test_every_weight_is_mapped_and_relative_tables_class_token_and_head_are_dropped(tmp_path):
    model = create_backbone("mvitv2_tiny", stem="patch")
    checkpoint = synthetic_checkpoint(model, spatial_side=16, temporal=4)
    path = tmp_path / "MVITv2_tiny.pyth"
    torch.save(checkpoint, path)
    report = load_pretrained(model, path)
    loaded = model.state_dict()
    for key, value in checkpoint["model_state"].items():
        key = key.removeprefix("module.")
        if key in loaded:
            torch.testing.assert_close(loaded[key], value, msg=key)
    assert report.missing == [] and report.resized == []
    assert sorted(report.dropped) == sorted(k for k in pyslowfast_keys() if "rel_pos" in k or k in {
        "cls_token", "pos_embed_class", "head.projection.weight", "head.projection.bias"})
    assert len(report.loaded) == len(loaded)


def test_position_embeddings_are_interpolated_to_the_models_token_grid(tmp_path):
    model = create_backbone("mvitv2_tiny", num_frames=16, crop_size=64, stem="patch")  # grid 8x16x16
    checkpoint = synthetic_checkpoint(model, spatial_side=8, temporal=4)  # trained on a 4x8x8 grid
    state = checkpoint["model_state"]
    state["module.pos_embed_spatial"] = torch.arange(48.0).expand(1, 64, 48).clone()  # constant over space
    state["module.pos_embed_temporal"] = torch.linspace(0, 3, 4)[None, :, None].expand(1, 4, 48).clone()
    torch.save(checkpoint, tmp_path / "k400.pyth")
    report = load_pretrained(model, tmp_path / "k400.pyth")
    assert sorted(report.resized) == ["pos_embed_spatial", "pos_embed_temporal"]
    assert model.pos_embed_spatial.shape == (1, 256, 48) and model.pos_embed_temporal.shape == (1, 8, 48)
    torch.testing.assert_close(model.pos_embed_spatial.detach(), torch.arange(48.0).expand(1, 256, 48))
    temporal = model.pos_embed_temporal.detach()[0, :, 0]  # a ramp stays a monotone ramp from 0 to 3
    assert (temporal.diff() >= 0).all() and temporal[0] == 0 and temporal[-1] == 3


def test_published_mvitv2_weights_without_absolute_embeddings_keep_ours(tmp_path):
    model = create_backbone("mvitv2_tiny", stem="patch")
    before = model.pos_embed_spatial.detach().clone()
    checkpoint = synthetic_checkpoint(model, spatial_side=16, temporal=4)
    for key in ("module.pos_embed_spatial", "module.pos_embed_temporal", "module.pos_embed_class"):
        del checkpoint["model_state"][key]
    torch.save(checkpoint, tmp_path / "mvitv2.pyth")
    report = load_pretrained(model, tmp_path / "mvitv2.pyth")
    assert report.missing == ["pos_embed_spatial", "pos_embed_temporal"]
    torch.testing.assert_close(model.pos_embed_spatial.detach(), before)


def test_build_model_starts_from_the_pretrained_file(tmp_path):
    source = create_backbone("mvitv2_tiny", stem="patch")
    torch.save(synthetic_checkpoint(source, 16, 4), tmp_path / "ckpt.pyth")
    model = build_model(ModelConfig(arch="mvitv2_tiny", arch_options={"stem": "patch"}, pretrained=str(tmp_path / "ckpt.pyth"),
                                    head_hidden_dim=8, expander_hidden_dim=8), num_classes=[3], num_frames=8,
                        crop_size=64)
    saved = torch.load(tmp_path / "ckpt.pyth")["model_state"]["module.blocks.2.attn.qkv.weight"]
    torch.testing.assert_close(model.backbone.blocks[2].attn.qkv.weight.detach(), saved)


def bad_checkpoints(tmp_path):
    torch.save({"model_state": {"blocks.0.attn.qkv.weight": "not a tensor"}}, tmp_path / "strings.pyth")
    (tmp_path / "garbage.pyth").write_bytes(b"\x00not a zip or a pickle")
    big = create_backbone("mvitv2_tiny", num_frames=8, crop_size=64, stem="patch")
    big.blocks[0].attn.qkv = torch.nn.Linear(48, 999)
    torch.save(big.state_dict(), tmp_path / "other_size.pyth")
    partial = {k: v for k, v in create_backbone("mvitv2_tiny", stem="patch").state_dict().items()
               if not k.startswith("norm.")}
    torch.save(partial, tmp_path / "partial.pyth")
    torch.save({"model_state": {"blocks.99.attn.pool_q.weight": torch.zeros(1)}}, tmp_path / "deeper.pyth")
    return [
        ("missing.pyth", "checkpoint not found"),
        ("garbage.pyth", "not a readable weight file"),
        ("strings.pyth", "no state dict of tensors"),
        ("other_size.pyth", r"blocks\.0\.attn\.qkv\.weight: shape \(999, 48\) in the checkpoint, \(144, 48\)"),
        ("partial.pyth", "2 weights missing, e.g. 'norm.weight'"),
        ("deeper.pyth", "unexpected key 'blocks.99.attn.pool_q.weight'"),
    ]


def test_a_bad_checkpoint_gives_one_line_naming_the_file(tmp_path):
    for name, reason in bad_checkpoints(tmp_path):
        model = create_backbone("mvitv2_tiny", stem="patch")
        with pytest.raises(CheckpointError, match=reason) as error:
            load_pretrained(model, tmp_path / name)
        message = str(error.value)
        assert message.startswith(str(tmp_path / name) + ": ") and "\n" not in message
        assert isinstance(error.value, ValueError)  # the CLI prints ValueErrors as one line and exits 2


def test_weights_for_the_patch_stem_are_refused_by_a_conv_stem_model_in_one_line(tmp_path):
    torch.save(synthetic_checkpoint(create_backbone("mvitv2_tiny", stem="patch"), 16, 4), tmp_path / "k400.pyth")
    with pytest.raises(CheckpointError, match=r"k400\.pyth: .*need the patch stem, this model has the 'conv' stem"):
        load_pretrained(create_backbone("mvitv2_tiny"), tmp_path / "k400.pyth")
