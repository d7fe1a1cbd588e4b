"""Backbone registry, timm-style: `@register_model` on a function `name(**kwargs) -> nn.Module`.

The backbone contract: what the rest of dalitrain may use of a backbone. Nothing outside `models/` branches on an
architecture's name; each architecture keeps its own config dataclass, its own init and its own weight importers.

- `backbone(video) -> embedding`: video [B, 3, T, H, W] (normalised, T x crop x crop) -> pooled embedding
  [B, embed_dim], what every classification head reads.
- `embed_dim: int`.
- `features(video) -> (embedding [B, embed_dim], feature map [B, C, T', H', W'])`: the embedding `backbone(video)`
  gives and, from the same pass, features that keep space and time, for heads that need space (ROI-Align box
  heads, which take boxes normalised to [0, 1] of the clip), C = embed_dim.
- `no_weight_decay() -> set[str]`: names (relative to the backbone) of parameters that must not decay although
  they are matrices: position embeddings, class tokens. Norms and biases (every parameter with ndim <= 1) never
  decay, so they need not be listed.
- Factory keywords, each None = the architecture's default: `num_frames`, `crop_size` (the clip the position
  embeddings are sized for), `drop_path_rate`, `activation_checkpointing` (recompute each block in backward),
  and `attention_impl` ("fused": dalitrain.kernels; "explicit": q k^T and attn v as plain matmuls, which
  PyTorch's FLOP counter sees: `dalitrain info` builds with it).
- `config.num_frames`, `config.crop_size`: the clip it was built for (what `dalitrain info` feeds it).
- `stages() -> list[tuple[str, nn.Module]]`: the module that ends each stage, in order, for `dalitrain info`; its
  output is either tokens [B, L, C] (reported as L x C) or (tokens [B, L, C], grid (T, H, W)) (reported as
  C x T x H x W).
- `weight_importers: dict[str, importer]` (class attribute): the weight-file layouts it starts from
  (`models/pretrained.py` detects a file's layout and calls `importer(backbone, state) -> LoadReport`).
- `resize_weight(name, tensor) -> tensor | None`: a checkpoint's weight whose shape follows the clip (position
  tables) resized to this backbone's clip, None for any other; what `model.init_from` and dalitrain checkpoints
  under `model.pretrained` use to start at another clip length.
- Optional, for backbones with parts to freeze: `freeze(groups)` (the group names it lists; frozen parameters stop
  requiring gradients, so the optimizer and DDP leave them out) and the factory keyword `adapter` ("none" or
  "mlp": SFA's adapter between ViViT's spatial and temporal transformers; other backbones refuse anything but none).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from typing import Any, Callable, Literal, TypeVar

from torch import nn

from dalitrain.errors import UsageError

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
ConfigT = TypeVar("ConfigT")


def check_config(config: Any) -> None:
    """For an architecture config's `__post_init__`, since options may come from YAML (`model.arch_options`):
    tuple fields given as lists become tuples, and a value outside a Literal field's choices is a one-line
    ValueError instead of falling through to another branch. Both read from the dataclass's annotations."""
    for name, tp in typing.get_type_hints(type(config)).items():
        value = getattr(config, name)
        if typing.get_origin(tp) is tuple and isinstance(value, list):
            setattr(config, name, tuple(value))
        elif typing.get_origin(tp) is Literal and value not in typing.get_args(tp):
            raise UsageError(f"{type(config).__name__}.{name} must be one of {typing.get_args(tp)}, got {value!r}")


def with_options(config: ConfigT, options: dict[str, Any]) -> ConfigT:
    """`config` with some fields replaced (`model.arch_options`, benchmark variants); an unknown field is a
    one-line ValueError naming the fields the architecture has."""
    fields = [f.name for f in dataclasses.fields(config)]
    unknown = [name for name in options if name not in fields]
    if unknown:
        raise UsageError(f"model.arch_options: {type(config).__name__} has no field {unknown[0]!r} "
                         f"(fields: {', '.join(fields)})")
    return dataclasses.replace(config, **options)


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if factory.__name__ in _BACKBONES:
        raise ValueError(f"backbone {factory.__name__!r} registered twice")
    _BACKBONES[factory.__name__] = factory
    return factory


def list_models() -> list[str]:
    _import_backbones()
    return sorted(_BACKBONES)


def create_backbone(name: str, **kwargs) -> nn.Module:
    _import_backbones()
    if name not in _BACKBONES:
        raise UsageError(f"unknown model {name!r} (registered: {', '.join(sorted(_BACKBONES))})")
    return _BACKBONES[name](**kwargs)


def _import_backbones() -> None:
    """Registration happens when a model module is imported; import every module of `dalitrain.models` before a
    lookup, so a new architecture file registers itself without being named here."""
    import dalitrain.models as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
