"""One backbone, one classifier head per dataset, and what the training method adds on top of them; and
`init_from_checkpoint`, which starts the whole of it from another run's checkpoint (a curriculum's next stage).

MultiTrain adds the expander (input of the informative loss) and the directed cross-dataset projections;
co-finetuning adds nothing. A localisation dataset (AVA) gets a box head on the backbone's feature map instead of
a classifier: its slot in `logits` is None, and `box_logits` scores the batch's boxes. The method decides
(`dalitrain.methods.model_parts`), so a model never holds a module its criterion does not use, and data-parallel
training needs no search for unused parameters.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from dalitrain.config import ModelConfig
from dalitrain.errors import UsageError
from dalitrain.models.box_head import BoxHead
from dalitrain.models.heads import CrossDatasetProjection, Expander, Projections, classifier_head
from dalitrain.models.layers import trunc_normal_init
from dalitrain.models.pretrained import (CheckpointError, LoadReport, detect_layout, load_pretrained, match_state,
                                         read_checkpoint)
from dalitrain.models.registry import create_backbone


class ModelOutput(NamedTuple):
    embedding: torch.Tensor  # [B, d] pooled backbone output
    logits: list[Optional[torch.Tensor]]  # one [B, C_k] per dataset k: what evaluation scores (None: localisation)
    expanded: Optional[torch.Tensor] = None  # [B, e] expander output (MultiTrain's informative loss)
    projected: Optional[Projections] = None  # W_ik logits_i for every i != k, and sum |W| (MultiTrain)
    box_logits: Optional[torch.Tensor] = None  # [N, A] action logits of the batch's boxes (with a box head)


class MultiDatasetModel(nn.Module):
    def __init__(self, backbone: nn.Module, heads: list[nn.Module], expander: Optional[nn.Module] = None,
                 projection: Optional[CrossDatasetProjection] = None, head_dropout: float = 0.0,
                 box_head: Optional[BoxHead] = None, box_dataset: Optional[int] = None):
        super().__init__()
        self.backbone = backbone
        self.box_head, self.box_dataset = box_head, box_dataset  # heads[box_dataset] is a parameter-free stand-in
        self.head_dropout = nn.Dropout(head_dropout)  # the classifiers' input only: the expander sees z itself
        self.heads = nn.ModuleList(heads)
        self.expander = expander
        self.projection = projection  # training signal only: see CrossDatasetProjection
        for module in (self.heads, self.expander):
            if module is not None:
                module.apply(trunc_normal_init)

    def forward(self, video: torch.Tensor, boxes: Optional[torch.Tensor] = None) -> ModelOutput:
        """video [B, C, T, H, W]; boxes [N, 5] (clip index, x1, y1, x2, y2 normalised) for the box head. The box
        head runs on every batch, on no boxes when there are none, so that data-parallel ranks share one graph."""
        box_logits = None
        if self.box_head is None:
            z = self.backbone(video)  # [B, C, T, H, W] -> [B, d]
        else:
            z, feature_map = self.backbone.features(video)  # [B, d], [B, d, T', H', W']
            box_logits = self.box_head(feature_map, boxes if boxes is not None else video.new_zeros(0, 5))
        dropped = self.head_dropout(z)
        logits = [head(dropped) if k != self.box_dataset else None for k, head in enumerate(self.heads)]
        return ModelOutput(z, logits,
                           self.expander(z) if self.expander is not None else None,
                           self.projection(logits) if self.projection is not None else None, box_logits)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups: decay on weight matrices and conv kernels; none on norms, biases (ndim <= 1) and on
        what the backbone names in `no_weight_decay()` (position embeddings, class tokens)."""
        exempt = {f"backbone.{name}" for name in self.backbone.no_weight_decay()}
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name in exempt else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of an inference export: everything but the training-only projections."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("projection.")}


def build_model(cfg: ModelConfig, *, num_classes: list[int], num_frames: int, crop_size: int,
                expander: bool = False, projection: bool = False,
                box_dataset: Optional[int] = None) -> MultiDatasetModel:
    """The backbone `cfg.arch` for T x crop x crop clips with one head per dataset; `expander` and `projection`
    come from the training method (`dalitrain.methods.model_parts`); dataset `box_dataset` (localisation) gets a
    box head with num_classes[box_dataset] actions instead of a classifier."""
    runtime = {"num_frames": "data.num_frames", "crop_size": "data.crop_size", "drop_path_rate": "model.drop_path_rate",
               "activation_checkpointing": "model.activation_checkpointing", "adapter": "model.adapter"}
    for key in cfg.arch_options:
        if key in runtime:
            raise UsageError(f"model.arch_options.{key}: set by {runtime[key]}, not as an architecture option")
    adapter = {"adapter": cfg.adapter} if cfg.adapter != "none" else {}  # only split backbones take one
    backbone = create_backbone(cfg.arch, num_frames=num_frames, crop_size=crop_size,
                               drop_path_rate=cfg.drop_path_rate,
                               activation_checkpointing=cfg.activation_checkpointing, **adapter, **cfg.arch_options)
    if cfg.pretrained:
        load_pretrained(backbone, cfg.pretrained)
    if cfg.freeze:
        if not hasattr(backbone, "freeze"):
            raise UsageError(f"model.freeze: {cfg.arch} names no module groups to freeze")
        backbone.freeze(cfg.freeze)
    heads = [classifier_head(backbone.embed_dim, c, cfg.head, cfg.head_hidden_dim) if k != box_dataset
             else nn.Identity() for k, c in enumerate(num_classes)]
    box_head = None
    if box_dataset is not None:
        box_head = BoxHead(backbone.embed_dim, num_classes[box_dataset], (cfg.box_resolution, cfg.box_resolution),
                           dropout=cfg.box_dropout)
        box_head.apply(trunc_normal_init)
    model = MultiDatasetModel(backbone, heads,
                              Expander(backbone.embed_dim, cfg.expander_hidden_dim) if expander else None,
                              CrossDatasetProjection(num_classes) if projection else None,
                              head_dropout=cfg.head_dropout, box_head=box_head, box_dataset=box_dataset)
    if cfg.compile:
        model.backbone.compile()  # in place: state-dict keys keep their names (no `_orig_mod.` prefix)
    return model


def init_from_checkpoint(model: MultiDatasetModel, cfg: ModelConfig) -> LoadReport:
    """`model.init_from`: every weight of `model` from a dalitrain training checkpoint of the same architecture;
    shapes that follow the clip are resized by the backbone (`resize_weight`), `model.init_skip` entries keep their
    initialisation. Anything else missing or mismatched is refused in one line naming the file."""
    path = cfg.init_from
    raw = read_checkpoint(path)
    state = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(state, dict) or detect_layout(state) != "dalitrain":
        raise CheckpointError(f"{path}: not a dalitrain training checkpoint (model.init_from reads those; "
                              "model.pretrained reads image and PySlowFast weights)")
    arch = (raw.get("config") or {}).get("model", {}).get("arch")
    if arch is not None and arch != cfg.arch:
        raise CheckpointError(f"{path}: a {arch} checkpoint, but model.arch is {cfg.arch}")
    resize_backbone = getattr(model.backbone, "resize_weight", None)

    def resize(key: str, value: torch.Tensor) -> Optional[torch.Tensor]:
        inside = key.removeprefix("backbone.")
        return resize_backbone(inside, value) if resize_backbone and inside != key else None

    theirs = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        loaded, report = match_state(model.state_dict(), theirs, resize, cfg.init_skip)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}; model.init_skip lists what may stay at initialisation") from None
    model.load_state_dict(loaded, strict=False)
    report.layout = "dalitrain"
    return report
