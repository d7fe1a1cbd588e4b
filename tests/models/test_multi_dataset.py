"""The multi-dataset model: outputs, weight-decay groups, inference export, build options."""
import pytest
import torch

from dalitrain.config import ModelConfig
from dalitrain.models import ModelOutput, build_model

CLASSES = [5, 7, 3]


def small_config(**kwargs) -> ModelConfig:
    return ModelConfig(arch="mvitv2_tiny", head_hidden_dim=32, expander_hidden_dim=64, **kwargs)


def full_model(cfg: ModelConfig | None = None):
    return build_model(cfg or small_config(), num_classes=CLASSES, num_frames=8, crop_size=64, expander=True,
                       projection=True)


def test_forward_returns_embedding_expansion_and_one_logits_per_dataset():
    model = full_model()
    out = model(torch.randn(2, 3, 8, 64, 64))
    assert isinstance(out, ModelOutput)
    assert out.embedding.shape == (2, 384) and out.expanded.shape == (2, 384)
    assert [y.shape for y in out.logits] == [(2, c) for c in CLASSES]
    assert [[y.shape for y in sources] for sources in out.projected.per_source] == [[(2, c)] * 2 for c in CLASSES]
    # per_source[k] = [W_ik logits_i for the other datasets i, ascending]; summed(k) adds them
    from_1, from_2 = out.logits[1] @ model.projection.weight(1, 0).T, out.logits[2] @ model.projection.weight(2, 0).T
    torch.testing.assert_close(out.projected.per_source[0], [from_1, from_2])
    torch.testing.assert_close(out.projected.summed(0), from_1 + from_2)
    l1 = sum(model.projection.weight(i, k).abs().sum() for i in range(3) for k in range(3) if i != k)
    torch.testing.assert_close(out.projected.l1, l1)


def test_a_model_without_method_parts_has_no_expander_or_projection():
    model = build_model(small_config(), num_classes=CLASSES, num_frames=8, crop_size=64)
    out = model(torch.randn(2, 3, 8, 64, 64))
    assert out.expanded is None and out.projected is None
    assert not any(name.startswith(("expander.", "projection.")) for name, _ in model.named_parameters())


@pytest.mark.parametrize("options, message", [
    ({"num_frames": 16}, "model.arch_options.num_frames: set by data.num_frames, not as an architecture option"),
    ({"attention_impl": "flash"}, "MViTv2Config.attention_impl must be one of ('fused', 'explicit'), got 'flash'"),
])
def test_bad_architecture_options_are_one_line(options, message):
    with pytest.raises(ValueError) as err:
        build_model(small_config(arch_options=options), num_classes=CLASSES, num_frames=8, crop_size=64)
    assert str(err.value) == message


def test_yaml_lists_in_architecture_options_become_tuples():
    model = build_model(small_config(arch_options={"stem": "patch", "patch_stride": [2, 4, 4]}),
                        num_classes=CLASSES, num_frames=8, crop_size=64)
    assert model.backbone.config.patch_stride == (2, 4, 4) and model.backbone.input_grid == (4, 16, 16)


def test_unknown_architecture_option_is_one_line():
    with pytest.raises(ValueError, match=r"model.arch_options: MViTv2Config has no field 'temporal_depth' "
                                         r"\(fields: embed_dim, .*stem"):
        build_model(small_config(arch_options={"temporal_depth": 2}), num_classes=CLASSES, num_frames=8,
                    crop_size=64)


def test_weight_decay_groups_exclude_norms_biases_and_position_embeddings():
    model = full_model()
    decay, no_decay = model.param_groups(0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert decayed.isdisjoint(not_decayed) and decayed | not_decayed == set(names.values())
    assert {"backbone.pos_embed_spatial", "backbone.pos_embed_temporal", "backbone.norm.weight",
            "backbone.blocks.0.attn.norm_q.weight", "backbone.blocks.0.attn.qkv.bias", "expander.norm.weight",
            "heads.0.0.bias", "backbone.patch_embed.proj.1.weight"} <= not_decayed
    assert {"backbone.blocks.0.attn.qkv.weight", "backbone.patch_embed.proj.0.weight",
            "backbone.blocks.0.attn.pool_q.weight", "heads.2.2.weight", "projection.maps.0_to_1.weight"} <= decayed


def test_inference_export_drops_only_the_projections():
    model = full_model()
    exported = model.inference_state_dict()
    dropped = set(model.state_dict()) - set(exported)
    assert dropped == {f"projection.maps.{i}_to_{k}.weight" for i in range(3) for k in range(3) if i != k}
    fresh = full_model().eval()
    missing, unexpected = fresh.load_state_dict(exported, strict=False)
    assert set(missing) == dropped and unexpected == []
    video = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(video).logits[1], model.eval()(video).logits[1])


def test_linear_heads_checkpointing_and_drop_path_reach_the_backbone():
    model = build_model(small_config(head="linear", activation_checkpointing=True, drop_path_rate=0.2),
                        num_classes=CLASSES, num_frames=8, crop_size=64)
    assert all(isinstance(h, torch.nn.Linear) for h in model.heads)
    assert model.backbone.activation_checkpointing
    assert model.backbone.blocks[-1].drop_path.p == pytest.approx(0.2)


def test_compile_flag_compiles_the_backbone_in_place_keeping_state_dict_keys():
    plain = build_model(small_config(), num_classes=CLASSES, num_frames=8, crop_size=64)
    compiled = build_model(small_config(compile=True), num_classes=CLASSES, num_frames=8, crop_size=64)
    assert compiled.backbone._compiled_call_impl is not None and plain.backbone._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_head_dropout_drops_the_heads_input_in_training_only():
    torch.manual_seed(0)
    model = full_model(small_config(head_dropout=0.5, drop_path_rate=0.0)).train()
    head = model.heads[0]
    seen = []
    head.register_forward_hook(lambda _module, inputs, _output: seen.append(inputs[0]))
    out = model(torch.randn(4, 3, 8, 64, 64))
    dropped = seen[-1]
    zeroed = dropped == 0
    assert 0.3 < zeroed.float().mean() < 0.7  # about half the features of the heads' input
    torch.testing.assert_close(dropped[~zeroed], 2 * out.embedding[~zeroed])  # the survivors scaled by 1 / (1 - p)
    model.eval()
    out = model(torch.randn(2, 3, 8, 64, 64))
    torch.testing.assert_close(seen[-1], out.embedding)  # no dropout at evaluation


@pytest.mark.parametrize("arch, options", [("mvitv2_tiny", {}), ("vivit_fe_tiny", {}),
                                           ("vivit_fe_tiny", {"feature_map": "temporal"})])
def test_a_localisation_dataset_gets_a_box_head_that_every_batch_runs(arch, options):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, head_hidden_dim=32, arch_options=options)
    model = build_model(cfg, num_classes=[4, 6], num_frames=8, crop_size=64, box_dataset=1)
    video = torch.randn(2, 3, 8, 64, 64)
    boxes = torch.tensor([[0, 0.1, 0.1, 0.6, 0.7], [1, 0.0, 0.3, 1.0, 1.0], [1, 0.5, 0.5, 0.9, 0.9]])
    out = model(video, boxes)
    assert out.logits[0].shape == (2, 4) and out.logits[1] is None
    assert out.box_logits.shape == (3, 6)
    empty = model(video)  # a batch without boxes still runs the box head, on none: one graph for every rank
    assert empty.box_logits.shape == (0, 6)
    (empty.logits[0].sum() + empty.box_logits.sum()).backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached, unreached[:5]
    # a box's scores follow its own region: moving one box changes its logits only
    model.eval()
    moved = boxes.clone()
    moved[2, 1:] = torch.tensor([0.0, 0.0, 0.3, 0.3])
    before, after = model(video, boxes).box_logits, model(video, moved).box_logits
    torch.testing.assert_close(before[:2], after[:2])
    assert not torch.allclose(before[2], after[2])
