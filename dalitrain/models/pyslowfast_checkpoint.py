"""Start an MViTv2 from a PySlowFast checkpoint (e.g. the published Kinetics-400 MViTv2-S/B weights).

PySlowFast saves `{"model_state": state_dict, "optimizer_state": ..., "epoch": ..., "cfg": ...}`; the state dict
may carry a `module.` prefix (DistributedDataParallel). Our MViTv2 keeps PySlowFast's module names, so the
mapping is: strip the prefix; drop what this variant does not have (class token and its position embedding,
relative-position tables `rel_pos_h/w/t`, the Kinetics classifier `head.*`); resize absolute position embeddings
whose token grid differs (spatial bicubic over (H, W), temporal linear over T). The published MViTv2 checkpoints
have no absolute embeddings: ours then keep their initialisation and are reported as missing.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dalitrain.models.pretrained import LoadReport

if TYPE_CHECKING:  # mvitv2 lists this module's importer in MViTv2.weight_importers
    from dalitrain.models.mvitv2 import MViTv2

# Keys of PySlowFast's MViT that this variant has no counterpart for (`pos_embed`: MViTv1's joint table).
DROPPED_KEYS = re.compile(r"^(cls_token|pos_embed_class|pos_embed|head\..*|.*\.rel_pos_[htw])$")
POSITION_KEYS = ("pos_embed_spatial", "pos_embed_temporal")


def import_pyslowfast(model: "MViTv2", state: dict[str, torch.Tensor]) -> LoadReport:
    """`MViTv2.weight_importers["pyslowfast_mvit"]`: load the converted weights, keep the rest initialised."""
    converted, report = convert_pyslowfast_state_dict(state, model)
    model.load_state_dict(converted, strict=False)
    return report


def convert_pyslowfast_state_dict(state: dict[str, torch.Tensor],
                                  model: "MViTv2") -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Map a PySlowFast MViT state dict onto `model`'s keys; raises ValueError on a mismatching architecture."""
    if model.config.stem != "patch":
        raise ValueError(f"PySlowFast MViTv2 weights need the patch stem, this model has the {model.config.stem!r} "
                         "stem (set model.arch_options.stem: patch)")
    own = model.state_dict()
    report = LoadReport()
    converted = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if DROPPED_KEYS.match(key):
            report.dropped.append(key)
            continue
        if key not in own:
            raise ValueError(f"unexpected key {key!r} (not a PySlowFast MViTv2 of this layout)")
        if key in POSITION_KEYS and value.shape != own[key].shape:
            value = resize_position_embedding(key, value, model)
            report.resized.append(key)
        if value.shape != own[key].shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} in "
                             f"the model (another model size?)")
        converted[key] = value
        report.loaded.append(key)
    report.missing = [k for k in own if k not in converted]
    not_position = [k for k in report.missing if k not in POSITION_KEYS]
    if not_position:
        raise ValueError(f"{len(not_position)} weights missing, e.g. {not_position[0]!r} (another model size?)")
    return converted, report


def resize_position_embedding(key: str, table: torch.Tensor, model: "MViTv2") -> torch.Tensor:
    t, h, w = model.input_grid
    dim = table.shape[-1]
    if key == "pos_embed_temporal":  # [1, T0, D] -> [1, T, D]
        return F.interpolate(table.transpose(1, 2), size=t, mode="linear", align_corners=False).transpose(1, 2)
    side = round(table.shape[1] ** 0.5)  # PySlowFast's spatial grids are square
    if side * side != table.shape[1]:
        raise ValueError(f"{key}: {table.shape[1]} spatial positions are not a square grid")
    grid = table.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, H0*W0, D] -> [1, D, H0, W0]
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)  # [1, D, H, W]
    return grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)  # [1, H*W, D]
