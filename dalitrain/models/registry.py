"""Backbone registry, timm-style: `@register_model` on a function `name(**kwargs) -> nn.Module`.

A registered backbone takes a video [B, C, T, H, W] and returns its pooled embedding [B, embed_dim]; it exposes
`embed_dim` (int) and accepts the runtime keyword arguments `num_frames`, `crop_size`, `drop_path_rate` and
`activation_checkpointing` (None = the model's defaults). `dalitrain info` also uses `attention_impl="explicit"`
(attention as plain matmuls, which the FLOP counter sees), `config.num_frames`, `config.crop_size`, `blocks` and
`stage_ends` (index of each stage's last block).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


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
        raise ValueError(f"unknown model {name!r} (registered: {', '.join(sorted(_BACKBONES))})")
    return _BACKBONES[name](**kwargs)


def _import_backbones() -> None:
    """Registration happens when a model module is imported; import them all before a lookup."""
    from dalitrain.models import mvitv2  # noqa: F401
