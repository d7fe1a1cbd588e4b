"""Kendall et al.'s homoscedastic uncertainty weighting: sum_k L_k / (2 sigma_k^2) + log sigma_k.

sigma_k is learned as s_k = log sigma_k (unconstrained, starts at sigma = 1, i.e. weight 1/2), so
1 / (2 sigma_k^2) = exp(-2 s_k) / 2. A task whose loss stays high earns a larger sigma and a smaller weight;
the log sigma term stops sigma from growing without bound.
"""
from __future__ import annotations

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    def __init__(self, num_tasks: int):
        super().__init__()
        self.log_sigma = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """losses [K] (one per task), present [K] bool: absent tasks add neither loss nor log sigma."""
        weighted = 0.5 * torch.exp(-2.0 * self.log_sigma) * losses + self.log_sigma
        return (weighted * present.to(weighted.dtype)).sum()

    def weights(self) -> torch.Tensor:
        """The current 1 / (2 sigma_k^2), for logging."""
        return 0.5 * torch.exp(-2.0 * self.log_sigma.detach())
