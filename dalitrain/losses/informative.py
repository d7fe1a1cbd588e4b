"""MultiTrain's informative loss on the expander output, over the whole global batch.

The variance/covariance statistics are batch statistics, so every rank gathers all ranks' rows first
(`gather_rows` is identity on one process). Every rank then computes the same value; `gather_rows`' backward sums
the gradient over ranks, and DDP's gradient averaging divides it back, so the parameters get exactly the gradient
of the single-process loss on the whole batch.
"""
from __future__ import annotations

import torch

from dalitrain.kernels.informative_loss import gather_rows, informative_loss


def informative_term(expanded: torch.Tensor, *, weight: float, std_weight: float, cov_weight: float) -> torch.Tensor:
    """weight * (std_weight * variance hinge + cov_weight * off-diagonal covariance) of expanded [B, e]."""
    var_loss, cov_loss = informative_loss(gather_rows(expanded), var_weight=std_weight, cov_weight=cov_weight)
    return weight * (var_loss + cov_loss)
