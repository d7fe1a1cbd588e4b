"""`model.pretrained: FILE`: read a weight file, tell its layout from its keys, hand it to the backbone's importer.

The dispatch is on the file, not on the architecture's name: each backbone class lists the layouts it can start
from in `weight_importers` (layout -> `importer(backbone, state) -> LoadReport`, raising ValueError with the reason).
A file whose layout the backbone does not read is refused in one line naming the file, its layout and the layouts
the backbone reads.

Layouts:
- `pyslowfast_mvit`: PySlowFast's MViT (`{"model_state": ...}`, `blocks.N.attn.pool_q`, `patch_embed.proj`);
- `timm_vit`: timm's ViT (`patch_embed.proj`, `blocks.N.attn.qkv`, `cls_token`, `pos_embed`);
- `hf_vit`: Hugging Face ViT files (`embeddings.patch_embeddings.projection`, `encoder.layer.N.attention.attention.
  query`, ..., with or without a `vit.` prefix);
- `dalitrain`: a dalitrain training checkpoint (`model` holds `backbone.*`), read by every backbone of the same
  architecture and size, resized where a shape follows the clip (`model.init_from` loads the whole model from one:
  `multi_dataset.init_from_checkpoint`).

Files: `.safetensors`, or anything `torch.load(weights_only=True)` reads (`.pth`, `.bin`, `.pyth`, `.pt`), holding
the state dict itself or wrapping it in `model_state`, `state_dict` or `model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from dalitrain.errors import DalitrainError


class CheckpointError(DalitrainError, ValueError):
    """A weight or training checkpoint that cannot be used; the message is one line: `<file>: <reason>`."""


@dataclass
class LoadReport:
    layout: str = ""
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the file, no counterpart here
    missing: list[str] = field(default_factory=list)  # here, not in the file (kept at initialisation)
    resized: list[str] = field(default_factory=list)  # position embeddings interpolated to this token grid
    skipped: list[str] = field(default_factory=list)  # kept at initialisation on request (model.init_skip)


Importer = Callable[[nn.Module, dict[str, torch.Tensor]], LoadReport]
_WRAPPERS = ("model_state", "state_dict", "model")


def read_checkpoint(path: str | Path) -> object:
    """What a weight file holds (safetensors or torch), before any unwrapping."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise pickle, zip, header and runtime errors alike
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable weight file ({reason})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (safetensors or torch), unwrapped from a training checkpoint's dict."""
    checkpoint = read_checkpoint(path)
    if isinstance(checkpoint, dict):
        for key in _WRAPPERS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint or \
            not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: no state dict of tensors (expected the dict itself or it under one of "
                              f"{', '.join(_WRAPPERS)})")
    return checkpoint


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """Which family of weights the keys come from; "unknown" when none matches."""
    keys = [k.removeprefix("module.") for k in state]
    if any(k.startswith("backbone.") for k in keys):
        return "dalitrain"
    if any(".attn.pool_q." in k or k.startswith("pos_embed_spatial") for k in keys):
        return "pyslowfast_mvit"
    if any(k.removeprefix("vit.").startswith("embeddings.patch_embeddings.projection.") for k in keys):
        return "hf_vit"
    if "patch_embed.proj.weight" in keys and any(".attn.qkv." in k for k in keys):
        return "timm_vit"
    return "unknown"


def load_pretrained(backbone: nn.Module, path: str | Path) -> LoadReport:
    """Load `path` into `backbone` through the importer of the file's layout; every refusal is one line."""
    state = read_state_dict(path)
    layout = detect_layout(state)
    importers: dict[str, Importer] = getattr(type(backbone), "weight_importers", {})
    if layout not in importers:
        what = "weights of an unknown layout" if layout == "unknown" else f"{layout} weights"
        reads = ", ".join(sorted(importers)) or "no weight files"
        raise CheckpointError(f"{path}: {what}, but {type(backbone).__name__} reads {reads}")
    try:
        report = importers[layout](backbone, state)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    report.layout = layout
    return report


def import_dalitrain(backbone: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """The backbone of a dalitrain training checkpoint, for a backbone of the same architecture and size; weights
    whose shape follows the clip are resized by the backbone's `resize_weight`."""
    prefix = "backbone."
    theirs = {k.removeprefix("module.")[len(prefix):]: v for k, v in state.items()
              if k.removeprefix("module.").startswith(prefix)}
    own = backbone.state_dict()
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    if missing or unexpected:
        example = missing[0] if missing else unexpected[0]
        raise ValueError(f"another architecture: {len(missing)} weights missing and {len(unexpected)} unexpected, "
                         f"e.g. {example!r}")
    loaded, report = match_state(own, theirs, getattr(backbone, "resize_weight", None))
    backbone.load_state_dict(loaded)
    return report


Resize = Callable[[str, torch.Tensor], Optional[torch.Tensor]]


def match_state(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], resize: Optional[Resize] = None,
                skip: Sequence[str] = ()) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """`theirs` on `own`'s keys: each tensor of the same shape loads, another shape goes through `resize(key,
    tensor)` (None: it cannot be resized); keys equal to an entry of `skip`, or under it (`backbone.adapter` skips
    `backbone.adapter.mlp.fc1.weight`), keep their initialisation. Raises a one-line ValueError for the first missing
    or mismatched tensor; tensors of `theirs` with no counterpart are reported as dropped."""
    def skipped(key: str) -> bool:
        return any(key == entry or key.startswith(entry + ".") for entry in skip)

    report, loaded = LoadReport(), {}
    missing = [k for k in own if k not in theirs and not skipped(k)]
    if missing:
        raise ValueError(f"{len(missing)} weights of the model are not in the checkpoint, e.g. {missing[0]!r}")
    for key, target in own.items():
        if skipped(key):
            report.skipped.append(key)
            continue
        value = theirs[key]
        if value.shape != target.shape:
            resized = resize(key, value) if resize is not None else None
            if resized is None or resized.shape != target.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} in the checkpoint, {tuple(target.shape)} in the "
                                 "model (another width or size)")
            value = resized
            report.resized.append(key)
        loaded[key] = value
        report.loaded.append(key)
    report.dropped = [k for k in theirs if k not in own]
    return loaded, report
