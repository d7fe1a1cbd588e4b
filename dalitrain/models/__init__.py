"""Models: MViTv2 and ViViT factorised-encoder backbones behind one contract (`registry.py`; names in
`registry.list_models()`), one head per dataset.

`build_model(cfg, num_classes=..., num_frames=..., crop_size=..., expander=..., projection=...)` returns a
`MultiDatasetModel` whose forward gives a `ModelOutput(embedding, logits, expanded, projected)`; the training method
decides whether the expander and the projections exist (`dalitrain.methods.model_parts`).
"""
from dalitrain.models.multi_dataset import ModelOutput, MultiDatasetModel, build_model, init_from_checkpoint
from dalitrain.models.registry import create_backbone, list_models

__all__ = ["ModelOutput", "MultiDatasetModel", "build_model", "init_from_checkpoint", "create_backbone", "list_models"]
