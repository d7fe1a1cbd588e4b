"""MViTv2 for video (Li et al., CVPR 2022) in the variant MultiTrain trains (Liang et al., NeurIPS 2022).

video [B, 3, T, H, W]
 -> Conv3D patch embedding (3x7x7, stride 2x4x4)            tokens [B, T'*H'*W', 96]
 -> + separate learned spatial and temporal position embeddings (absolute; no relative position tables)
 -> 4 stages of multi-scale blocks; the first block of stages 2-4 pools the query by 1x2x2 (the token grid
    shrinks 4x) and doubles the width and the heads inside its attention
 -> LayerNorm -> mean over tokens (no class token)         embedding [B, 768]

Block (pre-norm):  x = maxpool(x or proj(norm1 x)) + drop_path(attn(norm1 x));  x = x + drop_path(mlp(norm2 x))
Pooling attention: q, k, v = split(qkv(x)); each is pooled per head by a depthwise Conv3D (3x3x3) + LayerNorm;
    q with the block's query stride, k and v with the K/V stride (1x8x8 in stage 1, divided by each query stride
    from the block that applies it on, never below 1; so K/V see a 7x7 grid in most blocks, but 14x14 in the
    first block of a stage, and from stage 3 on more keys than queries); out = softmax(q k^T / sqrt(dh)) v + q
    (residual pooling connection), then a linear projection. All as PySlowFast's MViTv2 configs.

`stem="conv"` replaces the patch embedding by early convolutions (Xiao et al., "Early Convolutions Help
Transformers See Better", NeurIPS 2021): conv 1x3x3 stride 1x2x2 -> BN -> ReLU -> conv 3x3x3 stride 2x2x2 -> BN ->
ReLU -> 1x1x1 projection, reaching the same token grid. Not in the papers' models; the CPU demo uses it because a
patchified MViTv2 trained from scratch on a few thousand clips learns the demo's small-object shapes far worse
(README, "Design choices, measured").

Module and parameter names follow PySlowFast's MViT (`patch_embed.proj`, `blocks.N.attn.qkv`, `attn.pool_q`,
`norm_q`, ...) so that its checkpoints load with a short key mapping (`pyslowfast_checkpoint.py`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dalitrain.errors import UsageError
from dalitrain.kernels.pooling_attention import pooling_attention
from dalitrain.models.layers import ConvStem, DropPath, Mlp, trunc_normal_init
from dalitrain.models.pretrained import import_dalitrain
from dalitrain.models.pyslowfast_checkpoint import POSITION_KEYS, import_pyslowfast, resize_position_embedding
from dalitrain.models.registry import check_config, register_model, with_options

Grid = tuple[int, int, int]  # (T, H, W) of a token grid


@dataclass
class MViTv2Config:
    embed_dim: int = 96  # width of stage 1; doubles at every later stage
    num_heads: int = 1  # heads of stage 1; double at every later stage (head dim stays embed_dim / num_heads)
    depths: tuple[int, ...] = (1, 2, 11, 2)  # blocks per stage
    in_chans: int = 3
    patch_kernel: Grid = (3, 7, 7)
    patch_stride: Grid = (2, 4, 4)
    patch_padding: Grid = (1, 3, 3)
    stem: Literal["patch", "conv"] = "patch"  # "conv": early convolutions to the same grid (module docstring)
    stem_channels: tuple[int, int] = (32, 64)  # widths of the two convolutions of the "conv" stem
    pool_kernel: Grid = (3, 3, 3)  # depthwise Conv3D pooling of q, k, v in every block
    stage_q_stride: Grid = (1, 2, 2)  # query stride of the first block of stages 2, 3, ...
    kv_stride: Grid = (1, 8, 8)  # K/V stride of stage 1; divided by stage_q_stride from each later stage on
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.1  # stochastic depth, rising linearly from 0 (first block) to this (last block)
    # "fused": dalitrain.kernels.pooling_attention (Triton on CUDA, SDPA elsewhere); "explicit": the
    # softmax(q k^T) v that PySlowFast materialises, kept as the benchmark's baseline.
    attention_impl: Literal["fused", "explicit"] = "fused"
    num_frames: int = 16  # input the position embeddings are sized for, unless the caller gives another
    crop_size: int = 224

    def __post_init__(self):
        check_config(self)


class MViTv2(nn.Module):
    """The backbone contract of `registry.py`; `forward_features` also gives the last stage's token grid."""

    weight_importers = {"pyslowfast_mvit": import_pyslowfast, "dalitrain": import_dalitrain}

    def __init__(self, config: MViTv2Config, *, num_frames: Optional[int] = None, crop_size: Optional[int] = None,
                 drop_path_rate: Optional[float] = None, activation_checkpointing: Optional[bool] = None):
        super().__init__()
        config = dataclasses.replace(
            config, num_frames=num_frames or config.num_frames, crop_size=crop_size or config.crop_size,
            drop_path_rate=config.drop_path_rate if drop_path_rate is None else drop_path_rate)
        self.config = config
        self.activation_checkpointing = bool(activation_checkpointing)
        self.patch_embed = PatchEmbed(config)
        self.input_grid = self.patch_embed.output_grid((config.num_frames, config.crop_size, config.crop_size))
        t, h, w = self.input_grid
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, config.embed_dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, config.embed_dim))

        self.blocks = nn.ModuleList()
        self.stage_ends: list[int] = []  # index of the last block of each stage
        num_blocks = sum(config.depths)
        drop_path = [config.drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        dim, heads, kv_stride = config.embed_dim, config.num_heads, config.kv_stride
        for stage, depth in enumerate(config.depths):
            for i in range(depth):
                stage_transition = stage > 0 and i == 0
                q_stride = config.stage_q_stride if stage_transition else (1, 1, 1)
                kv_stride = tuple(max(kv // q, 1) for kv, q in zip(kv_stride, q_stride))
                dim_out, heads = (dim * 2, heads * 2) if stage_transition else (dim, heads)
                self.blocks.append(MultiScaleBlock(dim, dim_out, heads, q_stride, kv_stride, config,
                                                   drop_path[len(self.blocks)]))
                dim = dim_out
            self.stage_ends.append(len(self.blocks) - 1)
        self.norm = layer_norm(dim)
        self.embed_dim = dim
        self.apply(trunc_normal_init)  # as PySlowFast's MViT, its Conv3d pooling and patch kernels included
        nn.init.trunc_normal_(self.pos_embed_spatial, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_temporal, std=0.02)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x, _ = self.forward_features(video)
        return self.norm(x).mean(dim=1)  # [B, L, D] -> [B, D]

    def features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video [B, C, T, H, W] -> (the embedding `forward` gives [B, D], the normalised last-stage tokens on their
        grid [B, D, T', H', W']) from one pass."""
        x, grid = self.forward_features(video)
        x = self.norm(x)  # [B, T'*H'*W', D]
        return x.mean(dim=1), x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)  # [B, D], [B, D, T', H', W']

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed_spatial", "pos_embed_temporal"}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"stage {i + 1}", self.blocks[end]) for i, end in enumerate(self.stage_ends)]

    def resize_weight(self, name: str, value: torch.Tensor) -> Optional[torch.Tensor]:
        """The contract's resize: the position tables to this clip's token grid (as PySlowFast weights)."""
        if name in POSITION_KEYS:
            return resize_position_embedding(name, value, self)
        return None

    def forward_features(self, video: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """video [B, C, T, H, W] -> tokens [B, T'*H'*W', D] of the last stage and their grid (T', H', W')."""
        x = self.patch_embed(video)  # [B, D, T, H, W]
        grid = tuple(x.shape[2:])
        if grid != self.input_grid:
            raise ValueError(f"MViTv2: a {tuple(video.shape[2:])} clip gives a {grid} token grid, but the position "
                             f"embeddings are sized for {self.input_grid} (build with num_frames/crop_size)")
        x = x.flatten(2).transpose(1, 2)  # [B, D, T, H, W] -> [B, T*H*W, D], index t*H*W + h*W + w
        x = x + self.position_embedding()
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x, grid = checkpoint(block, x, grid, use_reentrant=False)
            else:
                x, grid = block(x, grid)
        return x, grid

    def position_embedding(self) -> torch.Tensor:
        """[1, T*H*W, D]: the spatial table repeated over time plus the temporal table repeated over space."""
        t, h, w = self.input_grid
        spatial = self.pos_embed_spatial.repeat(1, t, 1)  # [1, H*W, D] -> [1, T*H*W, D]
        temporal = self.pos_embed_temporal.repeat_interleave(h * w, dim=1)  # [1, T, D] -> [1, T*H*W, D]
        return spatial + temporal


class PatchEmbed(nn.Module):
    """video [B, C, T, H, W] -> [B, D, T', H', W']: one strided Conv3D ("patch") or early convolutions ("conv")."""

    def __init__(self, config: MViTv2Config):
        super().__init__()
        if config.stem == "patch":
            self.conv_geometry = [(config.patch_kernel, config.patch_stride, config.patch_padding)]
            self.proj = nn.Conv3d(config.in_chans, config.embed_dim, *self.conv_geometry[0])
        elif config.stem == "conv":
            if config.patch_stride[1:] != (4, 4):
                raise UsageError(f"the conv stem needs a patch stride (1 or 2, 4, 4), got {config.patch_stride}")
            self.proj = ConvStem(config.in_chans, config.stem_channels, config.embed_dim, config.patch_stride)
            self.conv_geometry = self.proj.geometry
        else:
            raise UsageError(f"MViTv2Config.stem must be 'patch' or 'conv', got {config.stem!r}")

    def output_grid(self, size: Grid) -> Grid:
        for kernel, stride, padding in self.conv_geometry:
            size = conv_output_grid(size, kernel, stride, padding)
        return size

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video)


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: Grid, kv_stride: Grid,
                 config: MViTv2Config, drop_path: float):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride, kv_stride, config)
        self.drop_path = DropPath(drop_path)
        self.norm2 = layer_norm(dim_out)
        self.mlp = Mlp(dim_out, int(dim_out * config.mlp_ratio))
        # The width changes inside the attention (MViTv2); the shortcut follows through a linear map.
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None
        # The shortcut is max-pooled like the query (kernel stride+1 where the stride is > 1, as PySlowFast).
        self.pool_skip = None
        if any(s > 1 for s in q_stride):
            kernel = tuple(s + 1 if s > 1 else s for s in q_stride)
            self.pool_skip = nn.MaxPool3d(kernel, q_stride, tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, Grid]:
        x_norm = self.norm1(x)
        x_attn, grid_out = self.attn(x_norm, grid)
        shortcut = self.proj(x_norm) if self.proj is not None else x
        if self.pool_skip is not None:
            shortcut, _ = pool_tokens(shortcut.unsqueeze(1), grid, self.pool_skip)  # one "head": [B, 1, L, D]
            shortcut = shortcut.squeeze(1)
        x = shortcut + self.drop_path(x_attn)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, grid_out


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: Grid, kv_stride: Grid,
                 config: MViTv2Config):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim_out // num_heads
        self.scale = head_dim ** -0.5
        self.attention_impl = config.attention_impl
        self.qkv = nn.Linear(dim, 3 * dim_out, bias=config.qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)
        padding = tuple(k // 2 for k in config.pool_kernel)

        def depthwise_pool(stride: Grid) -> nn.Conv3d:  # shared by all heads: channels = head_dim
            return nn.Conv3d(head_dim, head_dim, config.pool_kernel, stride, padding, groups=head_dim, bias=False)

        self.pool_q, self.norm_q = depthwise_pool(q_stride), layer_norm(head_dim)
        self.pool_k, self.norm_k = depthwise_pool(kv_stride), layer_norm(head_dim)
        self.pool_v, self.norm_v = depthwise_pool(kv_stride), layer_norm(head_dim)

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, Grid]:
        B, L, _ = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, -1)  # [B, L, 3*D] -> [B, L, 3, h, dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, L, dh]
        q, grid_q = pool_tokens(q, grid, self.pool_q, self.norm_q)  # [B, h, Lq, dh]
        k, _ = pool_tokens(k, grid, self.pool_k, self.norm_k)  # [B, h, Lkv, dh]
        v, _ = pool_tokens(v, grid, self.pool_v, self.norm_v)
        if self.attention_impl == "fused":
            x = pooling_attention(q, k, v, residual=q, scale=self.scale)  # [B, h, Lq, dh]
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # [B, h, Lq, Lkv], materialised
            x = attn.softmax(dim=-1) @ v + q
        x = x.transpose(1, 2).reshape(B, x.shape[2], -1)  # [B, h, Lq, dh] -> [B, Lq, h*dh]
        return self.proj(x), grid_q


def pool_tokens(x: torch.Tensor, grid: Grid, pool: nn.Module,
                norm: Optional[nn.Module] = None) -> tuple[torch.Tensor, Grid]:
    """Pool each head's tokens on their (T, H, W) grid: x [B, h, T*H*W, c] -> [B, h, T'*H'*W', c]."""
    B, h, L, c = x.shape
    x = x.reshape(B * h, *grid, c).permute(0, 4, 1, 2, 3)  # [B*h, c, T, H, W]
    x = pool(x)  # [B*h, c, T', H', W']
    grid_out = tuple(x.shape[2:])
    x = x.reshape(B, h, c, -1).transpose(2, 3)  # [B, h, T'*H'*W', c]
    return (norm(x) if norm is not None else x), grid_out


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)  # PySlowFast's MViT epsilon, so that its weights give its outputs


def conv_output_grid(size: Grid, kernel: Grid, stride: Grid, padding: Grid) -> Grid:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))


def _build(config: MViTv2Config, *, num_frames: Optional[int] = None, crop_size: Optional[int] = None,
           drop_path_rate: Optional[float] = None, activation_checkpointing: Optional[bool] = None,
           adapter: Optional[str] = None, **options) -> MViTv2:
    """`options` replace fields of the architecture's config (`stem`, `attention_impl`, ...): model.arch_options,
    the benchmarks, the checkpoint tests."""
    if adapter not in (None, "none"):
        raise UsageError(f"model.adapter: {adapter}: MViTv2 has no spatial and temporal transformers to put an "
                         "adapter between (ViViT's factorised encoder has)")
    return MViTv2(with_options(config, options), num_frames=num_frames, crop_size=crop_size,
                  drop_path_rate=drop_path_rate, activation_checkpointing=activation_checkpointing)


@register_model
def mvitv2_s_16x4(**kwargs) -> MViTv2:
    """PySlowFast's MViTv2-S 16x4 layout (34.5 M params, 64 GMACs at 16x224x224) with absolute embeddings."""
    return _build(MViTv2Config(depths=(1, 2, 11, 2), num_frames=16, drop_path_rate=0.2), **kwargs)


@register_model
def mvitv2_b_32x3(**kwargs) -> MViTv2:
    """MultiTrain's backbone: MViTv2-B 32x3, blocks 2/3/16/3 (51.2 M params, 225 GMACs at 32x224x224)."""
    return _build(MViTv2Config(depths=(2, 3, 16, 3), num_frames=32, drop_path_rate=0.3), **kwargs)


@register_model
def mvitv2_tiny(**kwargs) -> MViTv2:
    """CPU demo size: 8x64x64 clips -> a 4x16x16 token grid, widths 48/96/192/384, one block per stage.
    K/V start at stride 1x4x4 so that stage 1 attends to a 4x4x4 grid (the big models: 7x7 at 224 px).

    Early convolutions instead of the patch embedding, which learns the demo corpus far worse from scratch
    (README, "Design choices, measured")."""
    return _build(MViTv2Config(embed_dim=48, depths=(1, 1, 1, 1), kv_stride=(1, 4, 4), num_frames=8,
                               crop_size=64, drop_path_rate=0.0, stem="conv"), **kwargs)


__all__ = ["MViTv2", "MViTv2Config", "pool_tokens", "conv_output_grid", "mvitv2_s_16x4",
           "mvitv2_b_32x3", "mvitv2_tiny"]
