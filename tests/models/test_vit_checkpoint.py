"""Image ViT weights (timm and Hugging Face layouts) into a ViViT's spatial transformer, through load_pretrained.

The reference is a small random image ViT whose forward is written here from the checkpoint's tensors with plain
torch ops; its weights are written in each layout as the layouts are documented (not through the importer)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dalitrain.models.pretrained import CheckpointError, load_pretrained
from dalitrain.models.registry import create_backbone
from dalitrain.models.vivit import ViViT, ViViTConfig

WIDTH, DEPTH, HEADS, PATCH, MLP = 64, 2, 4, 8, 256


def random_vit(width=WIDTH, depth=DEPTH, patch=PATCH, grid=4, seed=0):
    """Layout-neutral weights of an image ViT; scales keep every LayerNorm input's variance near 1 (so that the
    two layouts' epsilons, 1e-6 and 1e-12, do not show) and the attention logits near N(0, 1)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def norm():
        return {"w": 1 + rand(width, scale=0.1), "b": rand(width, scale=0.1)}

    def linear(out_dim, in_dim):
        return {"w": rand(out_dim, in_dim, scale=in_dim ** -0.5), "b": rand(out_dim, scale=0.1)}

    return {
        "patch": {"w": rand(width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5), "b": rand(width, scale=0.1)},
        "cls": rand(1, 1, width), "pos": rand(1, 1 + grid * grid, width, scale=0.5),
        "blocks": [{"norm1": norm(), "q": linear(width, width), "k": linear(width, width), "v": linear(width, width),
                    "proj": linear(width, width), "norm2": norm(), "fc1": linear(MLP, width),
                    "fc2": linear(width, MLP)} for _ in range(depth)],
        "norm": norm(), "head": linear(10, width),
    }


def timm_layout(vit):
    state = {"patch_embed.proj.weight": vit["patch"]["w"], "patch_embed.proj.bias": vit["patch"]["b"],
             "cls_token": vit["cls"], "pos_embed": vit["pos"], "norm.weight": vit["norm"]["w"],
             "norm.bias": vit["norm"]["b"], "head.weight": vit["head"]["w"], "head.bias": vit["head"]["b"]}
    for i, block in enumerate(vit["blocks"]):
        for ours, theirs in (("norm1", "norm1"), ("proj", "attn.proj"), ("norm2", "norm2"), ("fc1", "mlp.fc1"),
                             ("fc2", "mlp.fc2")):
            state[f"blocks.{i}.{theirs}.weight"] = block[ours]["w"]
            state[f"blocks.{i}.{theirs}.bias"] = block[ours]["b"]
        for kind, short in (("weight", "w"), ("bias", "b")):
            state[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([block[p][short] for p in "qkv"])
    return state


def hf_layout(vit, prefix="vit."):
    """ViTModel (no prefix, with a pooler) or ViTForImageClassification (`vit.` prefix, `classifier.*`)."""
    p = prefix
    state = {f"{p}embeddings.cls_token": vit["cls"], f"{p}embeddings.position_embeddings": vit["pos"],
             f"{p}embeddings.patch_embeddings.projection.weight": vit["patch"]["w"],
             f"{p}embeddings.patch_embeddings.projection.bias": vit["patch"]["b"],
             f"{p}layernorm.weight": vit["norm"]["w"], f"{p}layernorm.bias": vit["norm"]["b"]}
    if prefix:
        state.update({"classifier.weight": vit["head"]["w"], "classifier.bias": vit["head"]["b"]})
    else:
        state.update({"pooler.dense.weight": torch.eye(WIDTH), "pooler.dense.bias": torch.zeros(WIDTH)})
    for i, block in enumerate(vit["blocks"]):
        layer = f"{p}encoder.layer.{i}."
        names = {"norm1": "layernorm_before", "q": "attention.attention.query", "k": "attention.attention.key",
                 "v": "attention.attention.value", "proj": "attention.output.dense", "norm2": "layernorm_after",
                 "fc1": "intermediate.dense", "fc2": "output.dense"}
        for ours, theirs in names.items():
            state[f"{layer}{theirs}.weight"], state[f"{layer}{theirs}.bias"] = block[ours]["w"], block[ours]["b"]
    return state


def image_vit(image, vit, eps, heads=HEADS):
    """The reference: the image ViT's CLS feature of image [B, 3, H, W] after its final norm."""
    x = F.conv2d(image, vit["patch"]["w"], vit["patch"]["b"], stride=PATCH)  # [B, D, h, w]
    x = x.flatten(2).transpose(1, 2)  # [B, h*w, D], row-major patches
    x = torch.cat([vit["cls"].expand(x.shape[0], -1, -1), x], dim=1) + vit["pos"]
    B, L, D = x.shape

    def ln(t, p):
        return F.layer_norm(t, (D,), p["w"], p["b"], eps)

    def heads_of(t):  # [B, L, D] -> [B, heads, L, D / heads]
        return t.reshape(B, L, heads, D // heads).transpose(1, 2)

    for block in vit["blocks"]:
        y = ln(x, block["norm1"])
        q, k, v = (heads_of(F.linear(y, block[n]["w"], block[n]["b"])) for n in "qkv")
        attn = torch.softmax(q @ k.transpose(-2, -1) / (D // heads) ** 0.5, dim=-1) @ v  # [B, heads, L, dh]
        x = x + F.linear(attn.transpose(1, 2).reshape(B, L, D), block["proj"]["w"], block["proj"]["b"])
        y = F.gelu(F.linear(ln(x, block["norm2"]), block["fc1"]["w"], block["fc1"]["b"]))
        x = x + F.linear(y, block["fc2"]["w"], block["fc2"]["b"])
    return ln(x, vit["norm"])[:, 0]


def vivit(tubelet_init="central_frame", crop_size=32, depth=DEPTH, width=WIDTH, patch=PATCH):
    torch.manual_seed(1)
    return ViViT(ViViTConfig(embed_dim=width, depth=depth, num_heads=HEADS, mlp_dim=MLP, temporal_depth=1,
                             tubelet=(2, patch, patch), num_frames=4, crop_size=crop_size, tubelet_init=tubelet_init))


def save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


FILES = [("timm", "vit.pth"), ("timm", "vit.safetensors"), ("hf", "pytorch_model.bin"),
         ("hf", "model.safetensors"), ("hf_no_prefix", "pytorch_model.bin")]


def write(layout, name, tmp_path, vit):
    state = {"timm": timm_layout, "hf": hf_layout, "hf_no_prefix": lambda v: hf_layout(v, prefix="")}[layout](vit)
    return save(state, tmp_path / name)


@pytest.mark.parametrize("layout, name", FILES)
def test_central_frame_init_gives_the_image_vit_on_each_tubelets_middle_frame(layout, name, tmp_path):
    vit = random_vit()
    model = vivit("central_frame")
    temporal_before = {k: v.clone() for k, v in model.temporal.state_dict().items()}
    report = load_pretrained(model.eval(), write(layout, name, tmp_path, vit))
    eps = 1e-6 if layout == "timm" else 1e-12  # timm's and Hugging Face's LayerNorm epsilon

    assert report.layout == ("timm_vit" if layout == "timm" else "hf_vit")
    assert sorted(report.loaded) == sorted(f"spatial.{k}" for k in model.spatial.state_dict())
    assert sorted(report.missing) == sorted(f"temporal.{k}" for k in model.temporal.state_dict())
    assert report.resized == []
    assert len(report.dropped) == 2  # head, classifier or pooler: weight and bias
    for key, value in model.temporal.state_dict().items():
        assert torch.equal(value, temporal_before[key]), key

    frame = torch.randn(2, 3, 32, 32)
    still = frame.unsqueeze(2).expand(-1, -1, 4, -1, -1)  # one frame repeated: [B, 3, T=4, H, W]
    with torch.no_grad():
        features = model.frame_features(still)  # [B, t'=2, D]
        expected = image_vit(frame, vit, eps)
        for t in range(2):
            torch.testing.assert_close(features[:, t], expected, rtol=0, atol=1e-5)
        video = torch.randn(2, 3, 4, 32, 32)  # different frames: tubelet i sees only its frame 2i + 2 // 2
        features = model.frame_features(video)
        for t in range(2):
            torch.testing.assert_close(features[:, t], image_vit(video[:, :, 2 * t + 1], vit, eps), rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout, name", [FILES[0], FILES[3]])
def test_inflate_init_gives_the_image_vit_on_each_tubelets_average_frame(layout, name, tmp_path):
    vit = random_vit(seed=3)
    model = vivit("inflate").eval()
    load_pretrained(model, write(layout, name, tmp_path, vit))
    eps = 1e-6 if layout == "timm" else 1e-12
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.frame_features(frame.unsqueeze(2).expand(-1, -1, 4, -1, -1))
        for t in range(2):  # sum over t of (w / t) x = w x on a still clip
            torch.testing.assert_close(features[:, t], image_vit(frame, vit, eps), rtol=0, atol=1e-5)
        video = torch.randn(2, 3, 4, 32, 32)
        features = model.frame_features(video)
        for t in range(2):  # the patch embedding is linear: the image ViT on the tubelet's mean frame
            mean_frame = video[:, :, 2 * t:2 * t + 2].mean(dim=2)
            torch.testing.assert_close(features[:, t], image_vit(mean_frame, vit, eps), rtol=0, atol=1e-5)


@pytest.mark.parametrize("crop_size, grid", [(48, 6), (24, 3)])
def test_the_position_table_is_resized_bicubically_to_the_crop_grid(crop_size, grid, tmp_path):
    vit = random_vit()
    rows = torch.arange(4.0).reshape(4, 1, 1).expand(4, 4, WIDTH) * torch.linspace(-1, 1, WIDTH)  # varies along h
    vit["pos"] = torch.cat([vit["pos"][:, :1], rows.reshape(1, 16, WIDTH)], dim=1)
    model = vivit(crop_size=crop_size)
    report = load_pretrained(model, write("timm", "vit.pth", tmp_path, vit))
    assert report.resized == ["spatial.pos_embed"]
    table = model.spatial.pos_embed.detach()
    assert table.shape == (1, 1 + grid * grid, WIDTH)
    torch.testing.assert_close(table[:, 0], vit["pos"][:, 0], rtol=0, atol=0)  # the CLS row is kept
    on_grid = table[0, 1:].reshape(grid, grid, WIDTH)  # row-major (h, w), as the patches
    torch.testing.assert_close(on_grid, on_grid[:, :1].expand(-1, grid, -1), rtol=0, atol=1e-6)  # constant along w
    assert (on_grid[1:, 0, -1] > on_grid[:-1, 0, -1]).all()  # and still rising along h
    expected = F.interpolate(rows.permute(2, 0, 1)[None], size=(grid, grid), mode="bicubic", align_corners=False)
    torch.testing.assert_close(on_grid, expected[0].permute(1, 2, 0), rtol=0, atol=1e-5)


def test_a_table_without_a_cls_row_gives_the_cls_no_position(tmp_path):
    vit = random_vit()
    state = timm_layout(vit)
    state["pos_embed"] = vit["pos"][:, 1:].clone()  # timm's no_embed_class
    model = vivit()
    load_pretrained(model.eval(), save(state, tmp_path / "vit.pth"))
    reference = dict(vit, pos=torch.cat([torch.zeros(1, 1, WIDTH), vit["pos"][:, 1:]], dim=1))
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        features = model.frame_features(frame.unsqueeze(2).expand(-1, -1, 4, -1, -1))
    torch.testing.assert_close(features[:, 0], image_vit(frame, reference, 1e-6), rtol=0, atol=1e-5)


def refusal(model, state, path):
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, save(state, path))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_another_depth_width_or_patch_size_is_refused_in_one_line(tmp_path):
    model = vivit()
    path = tmp_path / "vit.pth"
    assert refusal(model, timm_layout(random_vit(depth=3)), path).endswith(
        "image ViT has 3 blocks, the spatial transformer 2")
    assert refusal(model, timm_layout(random_vit(width=32)), path).endswith(
        "image ViT is 32 wide, the spatial transformer 64")
    assert refusal(model, timm_layout(random_vit(patch=16, grid=2)), path).endswith(
        "image ViT patches are 16x16, the tubelet 2x8x8 needs 8x8")
    assert refusal(model, hf_layout(random_vit(depth=12)), tmp_path / "model.safetensors").endswith(
        "image ViT has 12 blocks, the spatial transformer 2")


def test_a_conv_stem_model_and_an_mvit_refuse_image_weights_in_one_line(tmp_path):
    conv = ViViT(dataclasses.replace(vivit().config, stem="conv"))
    assert refusal(conv, timm_layout(random_vit()), tmp_path / "vit.pth").endswith(
        "image ViT patch weights need the tubelet stem, this model has the 'conv' stem "
        "(set model.arch_options.stem: tubelet)")
    mvit = create_backbone("mvitv2_tiny")
    assert refusal(mvit, timm_layout(random_vit()), tmp_path / "vit.pth").endswith(
        "timm_vit weights, but MViTv2 reads dalitrain, pyslowfast_mvit")


def test_a_partial_file_is_refused_naming_the_missing_weight(tmp_path):
    model = vivit()
    state = timm_layout(random_vit())
    del state["blocks.1.attn.qkv.weight"]
    assert refusal(model, state, tmp_path / "vit.pth").endswith("missing 'blocks.1.attn.qkv.weight'")
    state = timm_layout(random_vit())
    del state["norm.bias"]
    assert refusal(model, state, tmp_path / "vit.pth").endswith("missing 'norm.bias'")
    state = hf_layout(random_vit())
    del state["vit.encoder.layer.1.attention.attention.key.bias"]
    assert refusal(model, state, tmp_path / "model.bin").endswith(
        "missing 'encoder.layer.1.attention.attention.key.bias'")
    state = timm_layout(random_vit())
    state["blocks.0.ls1.gamma"] = torch.ones(WIDTH)  # LayerScale: another architecture
    assert "unexpected key 'blocks.0.ls1.gamma'" in refusal(model, state, tmp_path / "vit.pth")
    state = timm_layout(random_vit())
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(128, WIDTH)
    assert refusal(model, state, tmp_path / "vit.pth").endswith(
        "blocks.0.mlp.fc1.weight: shape (128, 64) in the file, (256, 64) in the spatial transformer")


def test_a_refused_file_leaves_the_model_untouched(tmp_path):
    model = vivit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = timm_layout(random_vit())
    del state["blocks.1.mlp.fc2.bias"]
    refusal(model, state, tmp_path / "vit.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
