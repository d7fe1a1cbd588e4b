"""Training methods: what `method:` in a config selects, in one place.

A method is the criterion and the modules it needs beside backbone and heads; the trainer only ever calls
`criterion(output, targets, dataset) -> LossTerms` and never branches on the method.

| method     | model adds                                  | criterion                                           |
|------------|---------------------------------------------|-----------------------------------------------------|
| multitrain | expander (informative loss on), projections | MultiTrainLoss: the paper's or the released         |
|            | (loss.projection not none)                  | objective, or a variant (`loss.*`)                  |
| cofinetune | nothing (a box head for a localisation      | CoFinetuneLoss: CE on each sample's own head (BCE   |
|            | dataset)                                    | per box for a localisation dataset's samples)       |

The co-finetuning recipe pairs it with `data.mixing: per_batch` (one dataset per global batch, `weighted` by size
or `alternating`) and `optim.name: sgd`; those are data and optimizer settings, so MultiTrain's objective can be
run on per-batch data, or co-finetuning's on mixed batches, from config alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from dalitrain.config import ExperimentConfig
from dalitrain.losses.cofinetune import CoFinetuneLoss
from dalitrain.losses.multitrain import MultiTrainLoss


@dataclass(frozen=True)
class ModelParts:
    expander: bool
    projection: bool


def model_parts(cfg: ExperimentConfig) -> ModelParts:
    """What the model must build for the method's criterion, and nothing more."""
    if cfg.method == "multitrain":
        return ModelParts(expander=cfg.loss.informative, projection=cfg.loss.projection != "none")
    return ModelParts(expander=False, projection=False)


def build_criterion(cfg: ExperimentConfig) -> nn.Module:
    num_datasets = len(cfg.data.datasets)
    if cfg.method == "multitrain":
        return MultiTrainLoss(cfg.loss, num_datasets)
    return CoFinetuneLoss(num_datasets, label_smoothing=cfg.loss.label_smoothing,  # the config allows no other
                          box_dataset=box_dataset(cfg))


def box_dataset(cfg: ExperimentConfig) -> Optional[int]:
    """The index of the run's localisation dataset (the config allows one), None without."""
    return next((k for k, d in enumerate(cfg.data.datasets) if d.task == "localisation"), None)
