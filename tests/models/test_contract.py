"""The backbone contract (`dalitrain/models/registry.py`), checked on every registered model, timm-style.

Each model is built for a small clip (its own patch and pooling geometry must still fit): forward and backward,
`features`, `dalitrain info model`, the weight-decay groups of the multi-dataset model around it, and a save /
load round trip that reproduces its outputs. Models over 200 M parameters are marked slow (GBs of memory).
"""
import json

import pytest
import torch

from dalitrain.cli import main
from dalitrain.config import ModelConfig
from dalitrain.models import build_model, create_backbone, list_models
from dalitrain.models.pretrained import load_pretrained

# (frames, crop) small enough for a CPU test and large enough for every registered model's token grid; a model
# that needs another clip gets an entry in CLIP_OVERRIDES
SMALL_CLIP = (4, 32)
CLIP_OVERRIDES: dict[str, tuple[int, int]] = {}
LARGE = 200e6


def small_clip(name: str) -> tuple[int, int]:
    return CLIP_OVERRIDES.get(name, SMALL_CLIP)


def param_count(name: str) -> int:
    frames, crop = small_clip(name)
    with torch.device("meta"):
        return sum(p.numel() for p in create_backbone(name, num_frames=frames, crop_size=crop).parameters())


MODELS = [pytest.param(name, marks=[pytest.mark.slow] if param_count(name) > LARGE else [])
          for name in list_models()]


@pytest.mark.parametrize("name", MODELS)
def test_backbone_contract(name, tmp_path):
    frames, crop = small_clip(name)
    torch.manual_seed(0)
    backbone = create_backbone(name, num_frames=frames, crop_size=crop, drop_path_rate=0.1,
                               activation_checkpointing=False)
    assert backbone.config.num_frames == frames and backbone.config.crop_size == crop
    video = torch.randn(2, 3, frames, crop, crop)

    embedding = backbone(video)
    assert embedding.shape == (2, backbone.embed_dim) and torch.isfinite(embedding).all()
    embedding.square().mean().backward()
    no_grad = [n for n, p in backbone.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"

    backbone.eval()  # no drop-path: the two calls must agree
    pooled, feature_map = backbone.features(video)
    torch.testing.assert_close(pooled, backbone(video), rtol=1e-5, atol=1e-6)  # the embedding from the same pass
    assert feature_map.ndim == 5 and feature_map.shape[0] == 2 and all(n >= 1 for n in feature_map.shape[2:])
    assert feature_map.shape[2] <= frames and feature_map.shape[3] <= crop

    names = [n for n, _ in backbone.named_parameters()]
    exempt = backbone.no_weight_decay()
    assert exempt <= set(names) and {n for n in names if "pos_embed" in n or "cls_token" in n} <= exempt
    assert [label for label, _ in backbone.stages()]


@pytest.mark.parametrize("name", MODELS)
def test_weight_decay_groups_and_checkpoint_round_trip(name, tmp_path):
    frames, crop = small_clip(name)
    cfg = ModelConfig(arch=name, head="linear")
    model = build_model(cfg, num_classes=[3, 4], num_frames=frames, crop_size=crop).eval()
    decay, no_decay = model.param_groups(0.05)
    by_id = {id(p): n for n, p in model.named_parameters()}
    not_decayed = {by_id[id(p)] for p in no_decay["params"]}
    decayed = {by_id[id(p)] for p in decay["params"]}
    for n, p in model.named_parameters():
        exempt = p.ndim <= 1 or "pos_embed" in n or "cls_token" in n
        assert (n in not_decayed) == exempt and (n in decayed) != exempt, n

    path = tmp_path / "model.pt"  # a dalitrain training checkpoint holds the model's state dict under "model"
    torch.save({"model": model.state_dict()}, path)
    fresh = build_model(cfg, num_classes=[3, 4], num_frames=frames, crop_size=crop).eval()
    report = load_pretrained(fresh.backbone, path)
    assert report.layout == "dalitrain" and len(report.loaded) == len(fresh.backbone.state_dict())
    video = torch.randn(1, 3, frames, crop, crop)
    with torch.no_grad():
        torch.testing.assert_close(fresh.backbone(video), model.backbone(video))


@pytest.mark.parametrize("name", [m for m in MODELS if not m.marks])
def test_info_model_describes_every_model(name, tmp_path):
    frames, crop = small_clip(name)
    out = tmp_path / "info.json"
    assert main(["info", "model", name, "--frames", str(frames), "--size", str(crop), "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["params"] == param_count(name) and info["gmacs"] > 0
    assert [s["stage"] for s in info["stages"]] == [label for label, _ in create_backbone(
        name, num_frames=frames, crop_size=crop).stages()]
