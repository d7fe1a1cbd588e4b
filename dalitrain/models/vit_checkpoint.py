"""Start a ViViT's spatial transformer from an image ViT (ImageNet-21k ViT-B/16 or ViT-L/16, as the papers do).

Two layouts are read (`pretrained.detect_layout` tells them apart):
- `timm_vit`: timm's ViT (`patch_embed.proj`, `cls_token`, `pos_embed` [1, 1+N, D], `blocks.N.norm1`,
  `blocks.N.attn.qkv` [3D, D] (rows q, k, v), `blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1/fc2`,
  `norm`); the classifier (`head.*`, `pre_logits.*`, `fc_norm.*`) is dropped.
- `hf_vit`: Hugging Face ViT files (`google/vit-base-patch16-224-in21k`), with or without the `vit.` prefix; mapped
  to timm's keys first (separate query, key, value concatenated in that order into qkv); `pooler.*`,
  `classifier.*` and `embeddings.mask_token` are dropped.

Then one path loads `backbone.spatial`:
- the 2-D patch kernel [D, 3, p, p] becomes the tubelet kernel [D, 3, t, p, p] per `config.tubelet_init`:
  "central_frame" puts it on temporal slice t // 2 with zeros elsewhere (a tubelet then sees only its middle
  frame, exactly as the image ViT sees that frame; the ViViT paper's best), "inflate" repeats it over t divided
  by t (the image ViT on the tubelet's average frame). The patch size must equal the tubelet's spatial size;
- the position table's grid rows are resized bicubically to the crop's h x w grid when they differ, its CLS row
  kept. A table without a CLS row (timm's `no_embed_class`, e.g. DeiT-III) gets a zero CLS row: the image ViT's
  CLS had no position.
The temporal transformer (and anything else outside `spatial`) keeps its initialisation: `report.missing`.
A file of another depth or width, or with blocks missing, is refused in one line naming the first mismatch.

Not in the weights, so not checked: the number of heads (it must be the model's: ViT-B/16 12, ViT-L/16 16, as the
factories have), and the LayerNorm epsilon (Hugging Face's ViT uses 1e-12, ours 1e-6 as timm's; with trained
weights, whose normalised activations have variances >> 1e-6, the outputs differ below float precision).
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dalitrain.models.pretrained import LoadReport

if TYPE_CHECKING:  # vivit lists this module's importers in ViViT.weight_importers
    from dalitrain.models.vivit import ViViT

TIMM_DROPPED = re.compile(r"^(head|pre_logits|fc_norm)\.")
HF_DROPPED = re.compile(r"^((pooler|classifier)\..*|embeddings\.mask_token)$")
HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")
HF_TO_TIMM = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
)]


def import_timm_vit(backbone: "ViViT", state: dict[str, torch.Tensor]) -> LoadReport:
    """`ViViT.weight_importers["timm_vit"]`: the image ViT into `backbone.spatial`, the rest kept initialised."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    dropped = [k for k in state if TIMM_DROPPED.match(k)]
    converted, report = convert_image_vit({k: v for k, v in state.items() if k not in dropped}, backbone)
    backbone.spatial.load_state_dict(converted)  # strict: convert_image_vit checked that every weight is there
    report.dropped = dropped
    return report


def import_hf_vit(backbone: "ViViT", state: dict[str, torch.Tensor]) -> LoadReport:
    """`ViViT.weight_importers["hf_vit"]`: Hugging Face keys -> timm's, then `import_timm_vit`."""
    timm_state, dropped = hf_to_timm(state)
    report = import_timm_vit(backbone, timm_state)
    report.dropped = dropped + report.dropped
    return report


def hf_to_timm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A Hugging Face ViT state dict in timm's keys, and the file's keys that have no counterpart (dropped)."""
    timm, dropped, qkv_parts = {}, [], {}
    for key, value in state.items():
        name = key.removeprefix("module.").removeprefix("vit.")
        if HF_DROPPED.match(name):
            dropped.append(key)
            continue
        match = HF_QKV.match(name)
        if match:
            layer, part, kind = match.groups()
            qkv_parts.setdefault((layer, kind), {})[part] = value
            continue
        for pattern, replacement in HF_TO_TIMM:
            new_name, found = pattern.subn(replacement, name)
            if found:
                timm[new_name] = value
                break
        else:
            raise ValueError(f"unexpected key {key!r} (not a Hugging Face ViT)")
    for (layer, kind), parts in qkv_parts.items():
        for part in ("query", "key", "value"):
            if part not in parts:
                raise ValueError(f"missing 'encoder.layer.{layer}.attention.attention.{part}.{kind}'")
        # timm's qkv rows are q, then k, then v: the same concatenation of the three [D, D] (or [D]) tensors
        timm[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return timm, dropped


def convert_image_vit(state: dict[str, torch.Tensor], backbone: "ViViT") -> tuple[dict[str, torch.Tensor], LoadReport]:
    """timm-keyed image ViT weights (classifier already removed) -> the state dict of `backbone.spatial`; raises a
    one-line ValueError naming the first missing, unexpected or mismatched weight."""
    spatial, config = backbone.spatial, backbone.config
    if config.stem != "tubelet":
        raise ValueError(f"image ViT patch weights need the tubelet stem, this model has the {config.stem!r} stem "
                         "(set model.arch_options.stem: tubelet)")
    own = spatial.state_dict()
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in state:
            raise ValueError(f"missing {key!r} (not an image ViT)")
    width = state["cls_token"].shape[-1]
    if width != config.embed_dim:
        raise ValueError(f"image ViT is {width} wide, the spatial transformer {config.embed_dim}")
    block_ids = {int(m.group(1)) for m in map(re.compile(r"^blocks\.(\d+)\.").match, state) if m}
    depth = max(block_ids) + 1 if block_ids else 0
    if depth != len(spatial.blocks):
        raise ValueError(f"image ViT has {depth} blocks, the spatial transformer {len(spatial.blocks)}")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ValueError(f"unexpected key {unexpected[0]!r} (not a plain ViT of this layout)")

    kernel = state["patch_embed.proj.weight"]  # [D, C, p, p]
    t, ph, pw = config.tubelet
    if kernel.ndim != 4 or tuple(kernel.shape[2:]) != (ph, pw):
        raise ValueError(f"image ViT patches are {'x'.join(map(str, kernel.shape[2:]))}, the tubelet "
                         f"{t}x{ph}x{pw} needs {ph}x{pw}")
    converted = dict(state)
    converted["patch_embed.proj.weight"] = tubelet_kernel(kernel, t, config.tubelet_init)
    converted["pos_embed"], resized = position_table(state["pos_embed"], spatial.grid)
    for key, value in own.items():
        if key not in converted:
            raise ValueError(f"missing {key!r}")
        if converted[key].shape != value.shape:
            raise ValueError(f"{key}: shape {tuple(converted[key].shape)} in the file, {tuple(value.shape)} in the "
                             f"spatial transformer")
    report = LoadReport(loaded=[f"spatial.{k}" for k in converted], resized=["spatial.pos_embed"] if resized else [])
    report.missing = [k for k in backbone.state_dict() if not k.startswith("spatial.")]
    return converted, report


def tubelet_kernel(kernel: torch.Tensor, t: int, how: str) -> torch.Tensor:
    """2-D patch kernel [D, C, p, q] -> tubelet kernel [D, C, t, p, q] ("central_frame" or "inflate")."""
    if how == "inflate":
        return kernel.unsqueeze(2).repeat(1, 1, t, 1, 1) / t  # sum over t of (w / t) x_t = w x on a still clip
    if how != "central_frame":
        raise ValueError(f"tubelet_init must be 'central_frame' or 'inflate', got {how!r}")
    tubelet = kernel.new_zeros(kernel.shape[0], kernel.shape[1], t, *kernel.shape[2:])
    tubelet[:, :, t // 2] = kernel  # Scenic's central frame: index t // 2
    return tubelet


def position_table(table: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """An image ViT's position table [1, (1+)h0*w0, D] -> [1, 1+h*w, D] on `grid` (h, w): the grid rows resized
    bicubically when (h0, w0) != (h, w), the CLS row kept (or zero when the table has none); and whether resized."""
    rows, dim = table.shape[1], table.shape[-1]
    with_cls = math.isqrt(rows - 1) ** 2 == rows - 1 and rows > 1
    if not with_cls and math.isqrt(rows) ** 2 != rows:
        raise ValueError(f"pos_embed has {rows} rows: neither 1 + a square grid nor a square grid")
    cls_row = table[:, :1] if with_cls else table.new_zeros(1, 1, dim)
    grid_rows = table[:, 1:] if with_cls else table
    side = math.isqrt(grid_rows.shape[1])
    resized = (side, side) != tuple(grid)
    if resized:
        image = grid_rows.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, h0*w0, D] -> [1, D, h0, w0]
        image = F.interpolate(image, size=tuple(grid), mode="bicubic", align_corners=False)  # [1, D, h, w]
        grid_rows = image.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim).to(table.dtype)  # [1, h*w, D]
    return torch.cat([cls_row, grid_rows], dim=1), resized
