import dataclasses
from pathlib import Path

import pytest
import torch

from dalitrain.config import ConfigError, expand_stages, load_config
from dalitrain.methods import model_parts
from dalitrain.models import build_model

CONFIGS = Path(__file__).parents[2] / "configs"
RECIPE = CONFIGS / "multitrain_k400_mit_ssv2_anet_mvitv2_b32x3.yaml"


def test_paper_recipe_matches_the_anchors():
    cfg = load_config(RECIPE)
    assert [(d.name, d.num_classes) for d in cfg.data.datasets] == [
        ("kinetics400", 400), ("moments_in_time", 339), ("ssv2", 174), ("activitynet", 200)]
    ssv2 = cfg.data.datasets[2]
    assert ssv2.sampling == "uniform" and ssv2.flip is False
    assert (cfg.data.num_frames, cfg.data.stride, cfg.data.crop_size, cfg.data.short_side) == (32, 3, 224, [256, 320])
    assert cfg.data.batch_size * 64 == 512 and cfg.data.mixing == "mixed"
    assert cfg.model.arch == "mvitv2_b_32x3" and cfg.model.head == "mlp" and cfg.model.head_hidden_dim == 2048
    assert cfg.model.expander_hidden_dim == 4096
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.warmup_epochs, o.warmup_start_lr) == (2e-4, 0.05, 10.0, 2e-6)
    l = cfg.loss  # noqa: E741
    assert (l.informative_weight, l.std_weight, l.cov_weight) == (0.1, 25.0, 1.0)
    assert l.informative and l.mixup_alpha > 0
    # the released configs' objective (MultiTrain's MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2 files)
    assert (l.projection, l.projection_weight, l.projection_sparsity, l.reduction, l.uncertainty) == (
        "released", 1.0, 0.0, "per_sample", "none")
    assert cfg.train.epochs == 50 and (cfg.eval.temporal_views, cfg.eval.spatial_views) == (3, 3)


@pytest.mark.parametrize("name, switches", [
    ("ablation_vanilla", dict(informative=False, projection="none")),
    ("ablation_no_informative", dict(informative=False)),
    ("ablation_no_projection", dict(projection="none")),
    ("mit_ssv2_anet_mvitv2_b32x3_paper_objective",
     dict(projection="paper", reduction="per_dataset", uncertainty="log_sigma")),
    ("variant_head_and_sum", dict(projection="head_and_sum", reduction="per_dataset", uncertainty="log_sigma")),
])
def test_variants_change_only_their_switches(name, switches):
    recipe = load_config(RECIPE)
    ablation = load_config(CONFIGS / f"multitrain_k400_{name}.yaml")
    assert ablation.loss == dataclasses.replace(recipe.loss, **switches)
    assert ablation.train.output_dir != recipe.train.output_dir
    for section in ("data", "model", "optim", "eval"):
        assert getattr(ablation, section) == getattr(recipe, section)


def test_k700_variant():
    cfg = load_config(CONFIGS / "multitrain_k700_mit_ssv2_anet_mvitv2_b32x3.yaml")
    assert (cfg.data.datasets[0].name, cfg.data.datasets[0].num_classes) == ("kinetics700", 700)
    assert cfg.optim == load_config(RECIPE).optim


def test_bad_base_is_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml: no such config file \(the base of .*c.yaml\)"):
        load_config(tmp_path / "c.yaml")


def build_for(cfg):
    parts = model_parts(cfg)
    with torch.device("meta"):  # shapes only: no memory for the parameters
        return build_model(dataclasses.replace(cfg.model, pretrained=None),
                           num_classes=[d.num_classes for d in cfg.data.datasets], num_frames=cfg.data.num_frames,
                           crop_size=cfg.data.crop_size, expander=parts.expander, projection=parts.projection)


def test_paper_recipe_builds():
    cfg = load_config(RECIPE)
    model = build_for(cfg)
    params = sum(p.numel() for p in model.backbone.parameters())
    assert 45e6 < params < 56e6  # MViTv2-B: 51.2 M with its 400-way head (anchors.md)
    assert model.projection.weight(0, 2).shape == (174, 400)


COFINETUNE = CONFIGS / "cofinetune_k400_mit_ssv2_vivit_b.yaml"


def test_cofinetune_recipe_matches_the_paper():
    cfg = load_config(COFINETUNE)
    assert cfg.method == "cofinetune"
    assert [(d.name, d.num_classes) for d in cfg.data.datasets] == [
        ("kinetics400", 400), ("moments_in_time", 339), ("ssv2", 174)]
    assert (cfg.data.mixing, cfg.data.batch_policy, cfg.data.epoch_size) == ("per_batch", "weighted", None)
    assert (cfg.data.num_frames, cfg.data.stride, cfg.data.batch_size * 16) == (32, 2, 128)
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.warmup_epochs) == ("sgd", 0.2, 0.9, 2.5)
    assert cfg.loss.label_smoothing == 0.1 and cfg.model.drop_path_rate == 0.2 and cfg.train.epochs == 15
    assert (cfg.eval.temporal_views, cfg.eval.spatial_views) == (1, 1)
    model = build_for(cfg)
    assert model.expander is None and model.projection is None
    assert 110e6 < sum(p.numel() for p in model.backbone.parameters()) < 120e6  # ViViT-B FE: 115.1 M


def test_cofinetune_recipe_on_mvitv2_changes_only_the_backbone_and_clip():
    vivit, mvit = load_config(COFINETUNE), load_config(CONFIGS / "cofinetune_k400_mit_ssv2_mvitv2_s16x4.yaml")
    assert mvit.model.arch == "mvitv2_s_16x4" and (mvit.data.num_frames, mvit.data.stride) == (16, 4)
    assert mvit.optim == vivit.optim and mvit.loss == vivit.loss and mvit.method == vivit.method
    assert build_for(mvit).projection is None


@pytest.mark.parametrize("name, lr, epochs, smoothing, drop_path", [
    ("sfa_k400_vivit_l", 0.1, (30, 30), 0.0, 0.0), ("sfa_ssv2_vivit_l", 0.5, (30, 35), 0.3, 0.3)])
def test_sfa_recipes_match_the_paper(name, lr, epochs, smoothing, drop_path):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    (_, stage1), (_, stage2) = expand_stages(cfg)
    for stage in (stage1, stage2):
        o = stage.optim
        assert (o.name, o.lr, o.momentum, o.warmup_epochs) == ("sgd", lr, 0.9, 2.5)
        assert stage.data.batch_size * 64 == 128 and stage.model.arch == "vivit_fe_l"
        assert (stage.loss.label_smoothing, stage.model.drop_path_rate) == (smoothing, drop_path)
    assert (stage1.train.epochs, stage2.train.epochs) == epochs
    assert (stage1.data.num_frames, stage2.data.num_frames) == (8, 128)
    assert stage1.model.pretrained and not stage1.model.freeze and stage1.model.adapter == "none"
    assert stage2.model.pretrained is None and stage2.model.init_from is None  # the runner sets stage 1's best
    assert (stage2.model.freeze, stage2.model.adapter, stage2.model.init_skip) == (
        ["spatial"], "mlp", ["backbone.adapter"])
    model = build_for(stage2)
    trainable = {name.split(".")[1] if name.startswith("backbone.") else name.split(".")[0]
                 for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"adapter", "temporal", "heads"}
    assert model.backbone.temporal.pos_embed.shape == (1, 1 + 64, 1024)  # 128 frames / tubelet 2


def test_cofinetune_with_ava_matches_the_paper_and_changes_only_the_datasets():
    classification, ava = load_config(COFINETUNE), load_config(CONFIGS / "cofinetune_k400_mit_ava_vivit_b.yaml")
    assert [d.name for d in ava.data.datasets] == ["kinetics400", "moments_in_time", "ava"]  # Table 2's set
    (box,) = [d for d in ava.data.datasets if d.task == "localisation"]
    assert (box.num_classes, box.sampling, box.start_second) == (60, "keyframe", 900.0)  # v2.2, 60 evaluated
    assert (box.train_boxes, box.train_proposal_threshold) == ("proposals", 0.8)  # detected boxes above 0.8
    assert (box.eval_boxes, box.val_proposal_threshold, box.box_jitter) == ("proposals", 0.2, 0.15)
    assert box.frequency_split == [10_000, 1_000]  # Table 3's head / tail
    assert ava.method == "cofinetune" and ava.data.mixing == "per_batch" and ava.data.batch_policy == "weighted"
    assert (ava.data.num_frames, ava.data.stride) == (32, 2)  # the same clip as classification
    for section in ("optim", "loss", "eval"):
        assert getattr(ava, section) == getattr(classification, section), section


def test_ava_mvitv2_recipe_is_one_localisation_dataset_on_mvitv2_s():
    cfg = load_config(CONFIGS / "ava_mvitv2_s_16x4.yaml")
    (box,) = cfg.data.datasets
    assert box.task == "localisation" and cfg.method == "cofinetune"
    assert (cfg.model.arch, cfg.data.num_frames, cfg.data.stride, cfg.data.crop_size) == ("mvitv2_s_16x4", 16, 4, 224)
    assert (cfg.model.box_resolution, cfg.model.box_dropout) == (7, 0.5)
