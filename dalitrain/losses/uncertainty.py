"""Kendall et al.'s homoscedastic uncertainty weighting, in the two parametrisations MultiTrain uses.

    log_sigma  sum_k L_k exp(-2 s_k) / 2 + s_k, s_k = log sigma_k learned from 0 (sigma = 1, weight 1/2): the
               paper's Eq. 6, L_k / (2 sigma_k^2) + log sigma_k, with an unconstrained parameter;
    sigma_sq   sum_k L_k / (2 v_k) + 0.5 log v_k, v_k = sigma_k^2 learned directly from U(0.2, 1.0): the released
               code (`MultiHeadLoss`, MULTI_USE_MTL_WEIGHT). v_k has no floor there and has none here: a step that
               takes it to 0 or below makes the loss non-finite, which the trainer reports and skips.

A task whose loss stays high earns a larger sigma and a smaller weight; the log term stops sigma growing without
bound. `regulariser_scale` multiplies the log terms: the released code divides the whole weighted sum, log terms
included, by the batch size.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    def __init__(self, num_tasks: int, parametrisation: Literal["log_sigma", "sigma_sq"] = "log_sigma"):
        super().__init__()
        self.parametrisation = parametrisation
        if parametrisation == "log_sigma":
            self.log_sigma = nn.Parameter(torch.zeros(num_tasks))
        elif parametrisation == "sigma_sq":
            self.sigma_sq = nn.Parameter(torch.empty(num_tasks).uniform_(0.2, 1.0))
        else:
            raise ValueError(f"unknown uncertainty parametrisation {parametrisation!r} (log_sigma or sigma_sq)")

    def forward(self, losses: torch.Tensor, present: torch.Tensor, regulariser_scale=1.0) -> torch.Tensor:
        """losses [K] (one per task), present [K] bool: absent tasks add neither loss nor log term;
        regulariser_scale: a float or a 0-d tensor."""
        if self.parametrisation == "log_sigma":
            weighted = 0.5 * torch.exp(-2.0 * self.log_sigma) * losses + regulariser_scale * self.log_sigma
        else:
            weighted = losses / (2.0 * self.sigma_sq) + regulariser_scale * 0.5 * torch.log(self.sigma_sq)
        return (weighted * present.to(weighted.dtype)).sum()

    def weights(self) -> torch.Tensor:
        """The current 1 / (2 sigma_k^2), for logging."""
        if self.parametrisation == "log_sigma":
            return 0.5 * torch.exp(-2.0 * self.log_sigma.detach())
        return 0.5 / self.sigma_sq.detach()
