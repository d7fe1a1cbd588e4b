"""One backbone, one classifier head per dataset, the expander, and the cross-dataset projections."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dalitrain.config import ModelConfig
from dalitrain.models.heads import CrossDatasetProjection, Expander, classifier_head
from dalitrain.models.mvitv2 import init_weights
from dalitrain.models.pyslowfast_checkpoint import load_pyslowfast_checkpoint
from dalitrain.models.registry import create_backbone


class ModelOutput(NamedTuple):
    embedding: torch.Tensor  # [B, d] pooled backbone output
    expanded: torch.Tensor  # [B, d] expander output (input of the informative loss)
    logits: list[torch.Tensor]  # one [B, C_k] per dataset k (before any projection term)


class MultiDatasetModel(nn.Module):
    def __init__(self, backbone: nn.Module, heads: list[nn.Module], expander: nn.Module,
                 projection: CrossDatasetProjection):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)
        self.expander = expander
        self.projection = projection  # called by the loss, not in forward: see CrossDatasetProjection
        for module in (self.heads, self.expander):
            module.apply(init_weights)  # trunc-normal(0.02) like the backbone, as PySlowFast does for its head

    def forward(self, video: torch.Tensor) -> ModelOutput:
        z = self.backbone(video)  # [B, C, T, H, W] -> [B, d]
        return ModelOutput(z, self.expander(z), [head(z) for head in self.heads])

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay on weight matrices and conv kernels; none on norms, biases, position embeddings."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or "pos_embed" in name else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of an inference export: everything but the training-only projections."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("projection.")}


def build_model(cfg: ModelConfig, *, num_classes: list[int], num_frames: int, crop_size: int) -> MultiDatasetModel:
    stem = {"stem": cfg.stem} if cfg.stem else {}  # only MViTv2 has the choice
    backbone = create_backbone(cfg.arch, num_frames=num_frames, crop_size=crop_size,
                               drop_path_rate=cfg.drop_path_rate,
                               activation_checkpointing=cfg.activation_checkpointing, **stem)
    if cfg.pretrained:
        load_pyslowfast_checkpoint(backbone, cfg.pretrained)
    heads = [classifier_head(backbone.embed_dim, c, cfg.head, cfg.head_hidden_dim) for c in num_classes]
    model = MultiDatasetModel(backbone, heads, Expander(backbone.embed_dim, cfg.expander_hidden_dim),
                              CrossDatasetProjection(num_classes))
    if cfg.compile:
        model.backbone.compile()  # in place: state-dict keys keep their names (no `_orig_mod.` prefix)
    return model
