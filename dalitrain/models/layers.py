"""Layers every transformer backbone here shares: the MLP of a block, stochastic depth, and the head init."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from dalitrain.errors import UsageError


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability p, scale the rest."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def trunc_normal_init(module: nn.Module) -> None:
    """`model.apply(trunc_normal_init)`: trunc-normal(0.02) weights of every linear layer and convolution (cut at
    +-2, so in effect normal(0.02)), zero biases, unit norms: the init of PySlowFast's MViT (every Conv3d
    included), of timm's and Scenic's ViT, and of the heads PySlowFast puts on them. PyTorch's default would leave
    e.g. MViTv2's 3x3x3 depthwise pooling kernels near U(+-0.19), about six times wider.

    The early-convolution stems get it too. MultiTrain on mvitv2_tiny (`dalitrain demo`, seed 0, 5 epochs), top-1
    kinetics_like / moments_like / ssv2_like / activitynet_like: every convolution at PyTorch's default (before
    this init) 45.8 / 81.2 / 69.6 / 67.5%; this init everywhere 19.4 / 71.9 / 57.1 / 50.0%; the stem at PyTorch's
    default and the rest at this init collapsed (pooled-feature std 0.04 after one epoch, chance after two)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm3d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _global_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of x [N, C, ...] with the statistics of the global batch: every data-parallel rank's
    rows, summed with a differentiable all-reduce (its backward sums the statistics' gradients over ranks, the
    gradient of the ranks' total loss, which DDP's average turns into that of their mean). Updates the running
    statistics as nn.BatchNorm does (unbiased variance)."""
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    values = x.float()
    count = dist_nn.all_reduce(torch.tensor([values.numel() / values.shape[1]], device=x.device))
    mean = dist_nn.all_reduce(values.sum(dims)) / count  # [C]
    var = dist_nn.all_reduce((values - mean.view(shape)).square().sum(dims)) / count  # biased: what normalises
    with torch.no_grad():
        norm.num_batches_tracked += 1
        norm.running_mean.lerp_(mean.detach(), norm.momentum)
        norm.running_var.lerp_(var.detach() * count / (count - 1).clamp(min=1.0), norm.momentum)
    normed = (values - mean.view(shape)) * torch.rsqrt(var + norm.eps).view(shape)
    return (normed * norm.weight.view(shape) + norm.bias.view(shape)).to(x.dtype)


def _data_parallel() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training statistics are those of the global batch (all data-parallel ranks), as
    SyncBatchNorm's, but on CPU (gloo) as on CUDA (NCCL), so that the CPU tests check the path a GPU run takes.
    Same parameters, buffers and state dict as nn.BatchNorm1d, which it is on one process and in eval mode.
    Used where a loss sees the whole batch (the expander before the gathered informative loss, as VICReg's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _global_batch_norm(self, x) if self.training and _data_parallel() else super().forward(x)


class GlobalBatchNorm3d(nn.BatchNorm3d):
    """nn.BatchNorm3d with the global batch's statistics in training (see GlobalBatchNorm1d): data-parallel
    training then computes what one process on the whole batch computes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _global_batch_norm(self, x) if self.training and _data_parallel() else super().forward(x)


class ConvStem(nn.Sequential):
    """Early convolutions (Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021) in place
    of a patch embedding: video [B, C, T, H, W] -> [B, D, T / st, H / s, W / s] for a stride (st, s, s), st in
    (1, 2), s a multiple of 4:

        conv 1x3x3 stride 1x2x2 -> BN -> ReLU -> conv 3x3x3 stride st x2x2 -> BN -> ReLU
        -> conv 1 x s/4 x s/4, stride = kernel (a 1x1x1 projection when s = 4)

    A transformer trained from scratch on a few thousand clips does not learn small-object shape through a
    patchify stem (measured in the CPU demo models' docstrings); these convolutions give it locality.
    """

    def __init__(self, in_chans: int, channels: tuple[int, int], embed_dim: int, stride: tuple[int, int, int]):
        st, sh, sw = stride
        if st not in (1, 2) or sh != sw or sh % 4:
            raise UsageError(f"the conv stem needs a stride (1 or 2, s, s) with s a multiple of 4, got {stride}")
        last = (1, sh // 4, sw // 4)
        # (kernel, stride, padding) of each convolution: H/2, then H/4 (time strided here), then H/s
        self.geometry = [((1, 3, 3), (1, 2, 2), (0, 1, 1)), ((3, 3, 3), (st, 2, 2), (1, 1, 1)), (last, last, (0, 0, 0))]
        first, second = channels
        super().__init__(
            nn.Conv3d(in_chans, first, *self.geometry[0], bias=False), GlobalBatchNorm3d(first), nn.ReLU(inplace=True),
            nn.Conv3d(first, second, *self.geometry[1], bias=False), GlobalBatchNorm3d(second), nn.ReLU(inplace=True),
            nn.Conv3d(second, embed_dim, *self.geometry[2]))
