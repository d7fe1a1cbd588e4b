"""Small stand-ins for the real loader and model, used by the engine tests only (never by the package).

FakeLoader follows the loader contract: `len()` = steps per epoch per rank, iteration starts at `start_step`, and
the data depend only on (seed, epoch, step): rank r of n gets rows r::n of the global batch, so n ranks together
see exactly what one process with an n-times larger batch sees. FakeModel follows the model contract: returns
the model's `ModelOutput` (embedding, logits, expanded, projected) and has `projection.weight(src, dst)` and
`param_groups`.
"""
from __future__ import annotations

import os
import signal
import torch
from torch import nn

from dalitrain.config import DataConfig, DatasetConfig, ExperimentConfig, LossConfig, OptimConfig, TrainConfig
from dalitrain.data.batch import Batch
from dalitrain.models import ModelOutput
from dalitrain.models.heads import Projections

NUM_CLASSES = [3, 5]
VIDEO_SHAPE = (3, 2, 4, 4)


class FakeLoader:
    def __init__(self, *, epoch: int, start_step: int = 0, shard_id: int = 0, num_shards: int = 1,
                 batch_size: int = 4, steps: int = 4, seed: int = 0, nan_steps: tuple = (), kill_at=None,
                 signal_at=None):
        self.epoch, self.start_step = epoch, start_step
        self.shard_id, self.num_shards = shard_id, num_shards
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.nan_steps, self.kill_at = nan_steps, kill_at
        self.signal_at = signal_at  # (epoch, step, rank): SIGTERM to this process when that rank fetches it

    def __len__(self) -> int:
        return self.steps

    def global_batch(self, step: int) -> Batch:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1009 + step)
        size = self.batch_size * self.num_shards
        dataset = torch.randint(len(NUM_CLASSES), (size,), generator=gen)
        label = torch.stack([torch.randint(NUM_CLASSES[d], (), generator=gen) for d in dataset.tolist()])
        video = torch.randn(size, *VIDEO_SHAPE, generator=gen) + label.view(-1, 1, 1, 1, 1).float()
        if step in self.nan_steps:
            video[0] = float("nan")
        index = step * size + torch.arange(size)  # unique within an epoch, as manifest rows are
        return Batch(video, label, dataset, index, torch.ones(size, dtype=torch.bool))

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            if self.kill_at == (self.epoch, step):
                os.kill(os.getpid(), signal.SIGKILL)
            if self.signal_at == (self.epoch, step, self.shard_id):
                os.kill(os.getpid(), signal.SIGTERM)
            batch = self.global_batch(step)
            rows = slice(self.shard_id * self.batch_size, (self.shard_id + 1) * self.batch_size)
            yield Batch(*(t[rows] for t in (batch.video, batch.label, batch.dataset, batch.index, batch.valid)))


class FakeProjection(nn.Module):
    def __init__(self, num_classes: list[int]):
        super().__init__()
        self.num_classes = num_classes
        self.weights = nn.ParameterDict({f"{i}_{k}": nn.Parameter(0.01 * torch.randn(ck, ci))
                                         for i, ci in enumerate(num_classes) for k, ck in enumerate(num_classes)
                                         if i != k})

    def weight(self, src: int, dst: int) -> torch.Tensor:
        return self.weights[f"{src}_{dst}"]

    def forward(self, logits: list[torch.Tensor]) -> Projections:
        per_source = [[logits[i] @ self.weight(i, k).T for i in range(len(logits)) if i != k]
                      for k in range(len(logits))]
        return Projections(per_source, sum(w.abs().sum() for w in self.weights.values()))


class FakeModel(nn.Module):
    def __init__(self, num_classes: list[int] = NUM_CLASSES, dim: int = 8, expanded: int = 16, dropout: float = 0.1,
                 multitrain_parts: bool = True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(torch.Size(VIDEO_SHAPE).numel(), dim), nn.GELU(),
                                      nn.Dropout(dropout))
        self.heads = nn.ModuleList(nn.Linear(dim, c) for c in num_classes)
        self.expander = nn.Linear(dim, expanded) if multitrain_parts else None
        self.projection = FakeProjection(num_classes) if multitrain_parts else None

    def forward(self, video: torch.Tensor) -> ModelOutput:
        z = self.backbone(video)
        logits = [head(z) for head in self.heads]
        if self.expander is None:
            return ModelOutput(z, logits)
        return ModelOutput(z, logits, self.expander(z), self.projection(logits))

    def param_groups(self, weight_decay: float) -> list[dict]:
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fake_config(output_dir: str, **sections) -> ExperimentConfig:
    """A two-dataset experiment sized for tests; `sections` override whole sections (e.g. loss=LossConfig(...))."""
    data = DataConfig(datasets=[DatasetConfig(name=f"d{k}", manifest=f"d{k}.txt", num_classes=c)
                                for k, c in enumerate(NUM_CLASSES)], batch_size=4, device="cpu")
    defaults = dict(
        data=data,
        optim=OptimConfig(lr=1e-2, warmup_epochs=0.5, warmup_start_lr=1e-3, min_lr=1e-4, clip_grad_norm=5.0),
        loss=LossConfig(mixup_alpha=0.4, label_smoothing=0.1),
        train=TrainConfig(epochs=3, output_dir=output_dir, log_every=1, keep_last=2, bf16=False),
    )
    return ExperimentConfig(**{**defaults, **sections})
