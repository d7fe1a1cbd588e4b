"""The optimizer (`optim.name`: AdamW, or SGD with momentum as the co-finetuning and SFA recipes) and its
learning-rate schedule: linear warm-up from a start lr, then cosine decay to a minimum.

SGD: PyTorch's SGD with momentum (and Nesterov when asked), fused on CUDA. AdamW: PyTorch's fused kernel on CUDA
(one launch for all parameters), its default multi-tensor path on the CPU, or NVIDIA apex's FusedAdam when asked
for (`optim.fused: apex`) and importable. The PyPI package named `apex` is unrelated to NVIDIA's, so apex is never
a dependency and never imported unless asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dalitrain.config import OptimConfig
from dalitrain.errors import UsageError


def build_optimizer(param_groups: list[dict], cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        if cfg.fused == "apex":
            raise UsageError("optim.fused: apex provides AdamW here; with optim.name: sgd use optim.fused=auto")
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    betas = tuple(cfg.betas)
    if cfg.fused == "apex":
        try:
            from apex.optimizers import FusedAdam
        except ImportError:
            raise UsageError("optim.fused is 'apex' but NVIDIA apex is not importable "
                             "(build it from github.com/NVIDIA/apex, or use optim.fused=auto)") from None
        if device.type != "cuda":
            raise UsageError("optim.fused is 'apex' but training runs on the CPU (apex's FusedAdam is CUDA-only)")
        return FusedAdam(param_groups, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, adam_w_mode=True)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay,
                             fused=device.type == "cuda")


@dataclass
class WarmupCosine:
    """lr(step) / base lr, for LambdaLR: linear from start_lr to base_lr over warmup_steps, then cosine to min_lr.

    A plain dataclass rather than a closure so that LambdaLR's state_dict stores its fields.
    """

    base_lr: float
    start_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_lr + (self.base_lr - self.start_lr) * step / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.base_lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, *, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """One scheduler step per optimizer step; warm-up given in (possibly fractional) epochs."""
    schedule = WarmupCosine(base_lr=cfg.lr, start_lr=cfg.warmup_start_lr, min_lr=cfg.min_lr,
                            warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                            total_steps=steps_per_epoch * epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
