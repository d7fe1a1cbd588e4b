"""Models: MViTv2 backbones (registry names in `registry.list_models()`), one head per dataset.

`build_model(cfg, num_classes=..., num_frames=..., crop_size=...)` returns a `MultiDatasetModel` whose forward
gives a `ModelOutput(embedding, expanded, logits)`.
"""
from dalitrain.models.multi_dataset import ModelOutput, MultiDatasetModel, build_model
from dalitrain.models.registry import create_backbone, list_models

__all__ = ["ModelOutput", "MultiDatasetModel", "build_model", "create_backbone", "list_models"]
