"""`model.pretrained`: the file's layout picks the importer; every refusal is one line naming the file."""
import pytest
import torch
from safetensors.torch import save_file

from dalitrain.config import ModelConfig
from dalitrain.models import build_model, create_backbone
from dalitrain.models.pretrained import CheckpointError, detect_layout, load_pretrained, read_state_dict


@pytest.mark.parametrize("keys, layout", [
    (["backbone.patch_embed.proj.weight", "heads.0.weight"], "dalitrain"),
    (["module.backbone.norm.weight"], "dalitrain"),
    (["blocks.0.attn.pool_q.weight", "patch_embed.proj.weight"], "pyslowfast_mvit"),
    (["pos_embed_spatial", "blocks.0.attn.qkv.weight"], "pyslowfast_mvit"),
    (["patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "cls_token"], "timm_vit"),
    (["vit.embeddings.patch_embeddings.projection.weight"], "hf_vit"),
    (["embeddings.patch_embeddings.projection.weight"], "hf_vit"),
    (["conv1.weight", "fc.weight"], "unknown"),
])
def test_layout_is_told_by_the_keys(keys, layout):
    assert detect_layout({k: torch.zeros(1) for k in keys}) == layout


def test_wrappers_and_safetensors_are_read(tmp_path):
    state = {"a.weight": torch.ones(2, 2)}
    for wrapper in ("model_state", "state_dict", "model"):
        torch.save({wrapper: state, "epoch": 3}, tmp_path / f"{wrapper}.pth")
        assert read_state_dict(tmp_path / f"{wrapper}.pth").keys() == state.keys()
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.testing.assert_close(read_state_dict(tmp_path / "w.safetensors")["a.weight"], state["a.weight"])


def one_line_refusal(backbone, path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_pretrained(backbone, path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_a_checkpoint_of_another_architecture_or_size_is_refused_and_leaves_the_model_untouched(tmp_path):
    mvit = build_model(ModelConfig(arch="mvitv2_tiny"), num_classes=[3], num_frames=8, crop_size=64)
    torch.save({"model": mvit.state_dict(), "epoch": 1}, tmp_path / "mvit.pt")
    vivit = create_backbone("vivit_fe_tiny")
    before = {k: v.clone() for k, v in vivit.state_dict().items()}
    assert "another architecture" in one_line_refusal(vivit, tmp_path / "mvit.pt")
    assert all(torch.equal(before[k], v) for k, v in vivit.state_dict().items())
    wider = create_backbone("mvitv2_tiny", embed_dim=64, num_heads=2)
    assert "pos_embed_spatial: shape (1, 256, 48) in the checkpoint, (1, 256, 64) in the model (another width" in \
        one_line_refusal(wider, tmp_path / "mvit.pt")
    longer = create_backbone("mvitv2_tiny", num_frames=16)  # a longer clip: the temporal table is resized
    assert load_pretrained(longer, tmp_path / "mvit.pt").resized == ["pos_embed_temporal"]
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    assert one_line_refusal(vivit, tmp_path / "resnet.pth").endswith(
        "weights of an unknown layout, but ViViT reads dalitrain, hf_vit, timm_vit")
    assert one_line_refusal(vivit, tmp_path / "missing.pth").endswith("checkpoint not found")


def test_build_model_starts_from_a_dalitrain_checkpoint(tmp_path):
    source = build_model(ModelConfig(arch="vivit_fe_tiny", head="linear"), num_classes=[3, 4], num_frames=8,
                         crop_size=64).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "stage1.pt")
    cfg = ModelConfig(arch="vivit_fe_tiny", head="linear", pretrained=str(tmp_path / "stage1.pt"))
    model = build_model(cfg, num_classes=[5], num_frames=8, crop_size=64).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(video), source.backbone(video))
