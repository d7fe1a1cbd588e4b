import dataclasses
from pathlib import Path

import pytest

from dalitrain.config import ConfigError, load_config

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
    assert l.informative and l.projection and l.projection_add and l.uncertainty and l.mixup_alpha > 0
    assert cfg.train.epochs == 50 and (cfg.eval.temporal_views, cfg.eval.spatial_views) == (3, 3)


@pytest.mark.parametrize("name, switches", [
    ("vanilla", dict(informative=False, projection=False, uncertainty=False)),
    ("no_informative", dict(informative=False)),
    ("no_projection", dict(projection=False)),
    ("no_projection_add", dict(projection_add=False)),
])
def test_ablations_change_only_their_switches(name, switches):
    recipe = load_config(RECIPE)
    ablation = load_config(CONFIGS / f"multitrain_k400_ablation_{name}.yaml")
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


def test_paper_recipe_builds():
    models = pytest.importorskip("dalitrain.models")
    if not hasattr(models, "build_model"):
        pytest.skip("dalitrain.models.build_model is not merged yet")
    import torch

    cfg = load_config(RECIPE)
    with torch.device("meta"):  # shapes only: 51 M parameters without allocating them
        model = models.build_model(cfg.model, num_classes=[d.num_classes for d in cfg.data.datasets],
                                   num_frames=cfg.data.num_frames, crop_size=cfg.data.crop_size)
    params = sum(p.numel() for p in model.backbone.parameters())
    assert 45e6 < params < 56e6  # MViTv2-B: 51.2 M with its 400-way head (anchors.md)
    assert model.projection.weight(0, 2).shape == (174, 400)
