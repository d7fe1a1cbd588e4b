"""ViViT factorised encoder (Arnab et al., ICCV 2021, "Model 2"), as Scenic's `SpaceTimeViViT`.

video [B, 3, T, H, W]
 -> spatial transformer (`self.spatial`), on each temporal index separately:
    Conv3D tubelet embedding (t x p x p, stride = kernel)       tokens [B*t', h*w, D]
    -> prepend a CLS token, + learned 2-D position embedding     [B*t', 1+h*w, D]
    -> pre-norm ViT blocks -> LayerNorm -> the CLS token          frame features [B, t', D]
 -> temporal transformer (`self.temporal`), over the frames:
    prepend a CLS token, + learned 1-D position embedding        [B, 1+t', D]
    -> pre-norm ViT blocks -> LayerNorm -> pool                   embedding [B, D]

Block (pre-norm, as ViT):  x = x + drop_path(attn(norm1 x));  x = x + drop_path(mlp(norm2 x))
Attention: q, k, v = split(qkv(x)); softmax(q k^T / sqrt(dh)) v per head; proj.

The two transformers are separate submodules because SFA-ViViT (Gowda et al.) freezes `spatial` and inserts an
adapter between them: `forward(video) = temporal(adapter(spatial(video)))`, the adapter an identity unless
`config.adapter` is "mlp".

SFA's stage 2 (`freeze(["spatial"])`): the spatial transformer's parameters stop requiring gradients, it stays in
eval mode (no dropout or drop-path) and runs under `torch.no_grad`, so autograd keeps none of its activations, and
it takes `frozen_chunk_frames` frames at a time, so its transient memory does not grow with the clip length. Only
the adapter, the temporal transformer and the heads keep activations.

The adapter (`Adapter`): the paper says "a two layer MLP" between the transformers and nothing more. Chosen here:
Linear(D, D)-GELU-Linear(D, D) added to its input (a residual) with the second Linear zero-initialised, so that a
stage 2 initialised from stage 1 starts exactly where stage 1 ended (the adapter is an identity at step 0).
`adapter_residual=False` is the literal reading (the MLP's output replaces its input, trunc-normal init); the
README compares the two on the demo corpus.

Pooling (`temporal_pool`): "mean" (default) is the co-finetuning paper's head input, "the average of the final
tokens": the mean of the t' frame tokens after the temporal norm, the temporal CLS excluded. The temporal CLS
token is still prepended (it attends with the frames and gets gradients, so DistributedDataParallel sees no unused
parameter, and a checkpoint keeps the same keys whichever pool it was trained with). "cls" is Scenic's "token"
classifier: the temporal CLS output.

Parameter names follow timm's ViT inside each transformer (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.N.norm1`, `blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1/fc2`, `norm`), so
an image ViT loads into `spatial` with a short mapping (`vit_checkpoint.py`). LayerNorm eps 1e-6 (timm, Scenic).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dalitrain.errors import UsageError
from dalitrain.kernels.pooling_attention import pooling_attention
from dalitrain.models.layers import ConvStem, DropPath, Mlp, trunc_normal_init
from dalitrain.models.pretrained import import_dalitrain
from dalitrain.models.registry import check_config, register_model, with_options
from dalitrain.models.vit_checkpoint import import_hf_vit, import_timm_vit, position_table


@dataclass
class ViViTConfig:
    # Width of both transformers: Scenic's FE has one hidden size, so the temporal width is not a field of its own
    # (a deviation from "temporal width configurable"; temporal depth, heads and MLP size are).
    embed_dim: int = 768
    depth: int = 12  # spatial transformer blocks
    num_heads: int = 12
    mlp_dim: int = 3072
    temporal_depth: int = 4
    temporal_num_heads: Optional[int] = None  # None: num_heads
    temporal_mlp_dim: Optional[int] = None  # None: mlp_dim
    tubelet: tuple[int, int, int] = (2, 16, 16)  # (t, h, w) of the Conv3D kernel and stride
    # "tubelet": the ViViT tubelet embedding; "conv": early convolutions to the same token grid (layers.ConvStem),
    # which the CPU demo model needs to learn from scratch (vivit_fe_tiny's docstring). Image weights need "tubelet".
    stem: Literal["tubelet", "conv"] = "tubelet"
    stem_channels: tuple[int, int] = (32, 64)  # widths of the conv stem's two 3x3 convolutions
    in_chans: int = 3
    num_frames: int = 32  # clip the position embeddings are sized for
    crop_size: int = 224
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly over each transformer's blocks to this
    qkv_bias: bool = True
    temporal_pool: Literal["mean", "cls"] = "mean"  # module docstring
    # How the image importers turn the 2-D patch kernel into the tubelet kernel: "central_frame" (the 2-D kernel
    # on temporal slice t // 2, zeros elsewhere; the ViViT paper's best) or "inflate" (repeated over t, / t).
    tubelet_init: Literal["central_frame", "inflate"] = "central_frame"
    # "fused": dalitrain.kernels.pooling_attention (Triton on CUDA, SDPA elsewhere); "explicit": softmax(q k^T) v
    # as two matmuls, which PyTorch's FLOP counter sees.
    attention_impl: Literal["fused", "explicit"] = "fused"
    adapter: Literal["none", "mlp"] = "none"  # between spatial and temporal (module docstring)
    adapter_residual: bool = True  # x + mlp(x), last layer zero-initialised; False: mlp(x) (module docstring)
    # Frames per pass through a frozen spatial transformer (a multiple of the tubelet's t; 0: the whole clip)
    frozen_chunk_frames: int = 16
    # What `features` gives box heads as the feature map: "spatial", the spatial transformer's patch tokens (each has
    # seen its tubelet only); "temporal", those tokens run through the temporal transformer (the same weights) one
    # spatial location at a time, so that each cell also sees the other frames (README, "Design choices, measured")
    feature_map: Literal["spatial", "temporal"] = "spatial"

    def __post_init__(self):
        check_config(self)  # lists from `arch_options` -> tuples, Literal fields checked
        for heads in (self.num_heads, self.temporal_heads):
            if self.embed_dim % heads:
                raise UsageError(f"ViViTConfig: embed_dim {self.embed_dim} is not divisible by {heads} heads")
        t, h, w = self.tubelet
        if self.num_frames % t or self.crop_size % h or self.crop_size % w:
            raise UsageError(f"ViViTConfig: a {self.num_frames}x{self.crop_size}x{self.crop_size} clip does not "
                             f"split into {t}x{h}x{w} tubelets")
        if self.frozen_chunk_frames < 0 or self.frozen_chunk_frames % t:
            raise UsageError(f"ViViTConfig: frozen_chunk_frames {self.frozen_chunk_frames} is not a multiple of the "
                             f"tubelet's {t} frames")

    @property
    def temporal_heads(self) -> int:
        return self.temporal_num_heads or self.num_heads

    @property
    def temporal_mlp(self) -> int:
        return self.temporal_mlp_dim or self.mlp_dim

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(t', h, w): the tubelet grid of the clip the position embeddings are sized for."""
        t, h, w = self.tubelet
        return self.num_frames // t, self.crop_size // h, self.crop_size // w


class ViViT(nn.Module):
    """The backbone contract of `registry.py`; `frame_features` and `temporal` are the two halves of `forward`."""

    weight_importers = {"timm_vit": import_timm_vit, "hf_vit": import_hf_vit, "dalitrain": import_dalitrain}

    def __init__(self, config: ViViTConfig, *, activation_checkpointing: bool = False):
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.spatial = SpatialTransformer(config)
        self.adapter = Adapter(config.embed_dim, config.adapter_residual) if config.adapter == "mlp" else nn.Identity()
        self.temporal = TemporalTransformer(config)
        self.spatial_frozen = False
        self.set_activation_checkpointing(activation_checkpointing)
        self.apply(trunc_normal_init)  # as timm's and Scenic's ViT
        for encoder in (self.spatial, self.temporal):
            nn.init.trunc_normal_(encoder.cls_token, std=0.02)
            nn.init.trunc_normal_(encoder.pos_embed, std=0.02)
        if isinstance(self.adapter, Adapter):
            self.adapter.reset_parameters()  # after the blanket init: the residual adapter starts at zero

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> embedding [B, D]."""
        return self.temporal(self.adapter(self.frame_features(video)))

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> the spatial transformer's normed CLS token of each temporal index [B, t', D].
        Any clip length (no temporal position here; frames past the last whole tubelet are ignored, as the conv).
        Frozen: without autograd, `frozen_chunk_frames` frames at a time (module docstring)."""
        if not self.spatial_frozen:
            return self.spatial(video)
        with torch.no_grad():
            return self.spatial(video, chunk_frames=self.config.frozen_chunk_frames)

    def freeze(self, groups: list[str]) -> None:
        """The contract's freezing: "spatial" (SFA's stage 2) is the only group."""
        unknown = [g for g in groups if g != "spatial"]
        if unknown:
            raise UsageError(f"model.freeze: ViViT has no module group {unknown[0]!r} (groups: spatial)")
        if groups:
            self.spatial.requires_grad_(False)
            self.spatial_frozen = True
            self.spatial.eval()

    def train(self, mode: bool = True) -> "ViViT":
        super().train(mode)
        if self.spatial_frozen:
            self.spatial.eval()  # frozen means no dropout or drop-path too: the features stage 1 learned
        return self

    def resize_weight(self, name: str, value: torch.Tensor) -> Optional[torch.Tensor]:
        """The contract's resize for weights whose shape follows the clip: the temporal position table [1, 1+t0, D]
        -> [1, 1+t', D] by 1-D linear interpolation with the ends aligned (Scenic's
        `interpolate_1d_positional_embeddings`, scipy's zoom of order 1), the CLS row kept; the spatial table
        bicubically on its grid (as the image importers). None for any other weight."""
        if name == "temporal.pos_embed":
            rows = value[:, 1:].float().transpose(1, 2)  # [1, t0, D] -> [1, D, t0]
            rows = F.interpolate(rows, size=self.temporal.num_tokens, mode="linear", align_corners=True)
            return torch.cat([value[:, :1], rows.transpose(1, 2).to(value.dtype)], dim=1)  # [1, 1+t', D]
        if name == "spatial.pos_embed":
            return position_table(value, self.spatial.grid)[0]
        return None

    def features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video [B, 3, T, H, W] -> (the embedding `forward` gives [B, D], a feature map [B, D, t', h, w]) from one
        pass of the spatial transformer. The map is the spatial transformer's final (normed) patch tokens on their
        grid, which have seen no other frame than their tubelet's, or with `config.feature_map: temporal` those
        tokens through the temporal transformer one location at a time. Recorded deviation: the factorised encoder
        keeps no h x w tokens after its temporal transformer, and the co-finetuning paper does not say how its
        ROI-Align head gets them. Frozen, the spatial pass runs without autograd but whole (not in chunks)."""
        with torch.no_grad() if self.spatial_frozen else nullcontext():
            x, t = self.spatial.tokens(video)  # [B*t', 1+h*w, D]
        (h, w), D = self.spatial.grid, x.shape[-1]
        frames = x[:, 0].reshape(-1, t, D)  # the CLS of each temporal index: [B*t', D] -> [B, t', D]
        patches = x[:, 1:].reshape(-1, t, h, w, D)  # [B*t', h*w, D] -> [B, t', h, w, D]
        if self.config.feature_map == "temporal":
            series = patches.permute(0, 2, 3, 1, 4).reshape(-1, t, D)  # one sequence per location: [B*h*w, t', D]
            series = self.temporal.encode(self.adapter(series))[:, 1:]  # its t' output tokens: [B*h*w, t', D]
            patches = series.reshape(-1, h, w, t, D).permute(0, 3, 1, 2, 4)  # [B, t', h, w, D]
        return self.temporal(self.adapter(frames)), patches.permute(0, 4, 1, 2, 3)  # [B, D], [B, D, t', h, w]

    def no_weight_decay(self) -> set[str]:
        return {"spatial.cls_token", "spatial.pos_embed", "temporal.cls_token", "temporal.pos_embed"}

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The last block of each transformer; outputs [B*t', 1+h*w, D] (spatial) and [B, 1+t', D] (temporal)."""
        return [("spatial", self.spatial.blocks[-1]), ("temporal", self.temporal.blocks[-1])]

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block in backward (both transformers; set `encoder.activation_checkpointing` for one)."""
        self.spatial.activation_checkpointing = self.temporal.activation_checkpointing = bool(enabled)


class Encoder(nn.Module):
    """What both transformers share: tokens [N, L, D] -> prepend CLS, + position embedding -> blocks -> norm."""

    def __init__(self, config: ViViTConfig, num_tokens: int, depth: int, num_heads: int, mlp_dim: int):
        super().__init__()
        dim = config.embed_dim
        self.num_tokens = num_tokens  # tokens the position embedding is sized for, CLS not counted
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_tokens, dim))  # row 0: the CLS position (as timm)
        drop_path = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_dim, config, p) for p in drop_path)
        self.norm = layer_norm(dim)
        self.activation_checkpointing = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, L, D] -> normed [N, 1+L, D], the CLS first."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # [N, L, D] -> [N, 1+L, D]
        x = x + self.pos_embed
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)


class SpatialTransformer(Encoder):
    """An image ViT applied to every temporal index: video [B, 3, T, H, W] -> per-frame CLS [B, t', D]."""

    def __init__(self, config: ViViTConfig):
        _, h, w = config.token_grid
        super().__init__(config, h * w, config.depth, config.num_heads, config.mlp_dim)
        self.grid = (h, w)
        self.patch_embed = TubeletEmbed(config)

    def forward(self, video: torch.Tensor, chunk_frames: int = 0) -> torch.Tensor:
        """video [B, 3, T, H, W] -> per-frame CLS [B, t', D]; `chunk_frames` > 0: that many frames at a time."""
        pieces = self.chunk_tokens(video, chunk_frames) if 0 < chunk_frames < video.shape[2] else [self.tokens(video)]
        # CLS of each temporal index: [B*t', D] -> [B, t', D], pieces joined along t'
        return torch.cat([x[:, 0].reshape(-1, t, x.shape[-1]) for x, t in pieces], dim=1)

    def tokens(self, video: torch.Tensor) -> tuple[torch.Tensor, int]:
        """video [B, 3, T, H, W] -> normed tokens [B*t', 1+h*w, D] (CLS first, then row-major h, w) and t'."""
        return self.encode_grid(self.patch_embed(video))

    def encode_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Embedded patches [B, D, t', h, w] -> normed tokens [B*t', 1+h*w, D] and t'."""
        B, D, t, h, w = x.shape
        if (h, w) != self.grid:
            raise ValueError(f"ViViT: the clip gives a {h}x{w} patch grid, but the spatial "
                             f"position embeddings are sized for {self.grid[0]}x{self.grid[1]} (build with "
                             f"crop_size)")
        x = x.permute(0, 2, 3, 4, 1).reshape(B * t, h * w, D)  # [B, D, t', h, w] -> [B*t', h*w, D], row-major (h, w)
        return self.encode(x), t

    def chunk_tokens(self, video: torch.Tensor, chunk_frames: int) -> Iterator[tuple[torch.Tensor, int]]:
        """`tokens` of `chunk_frames` frames at a time, equal to slices of the whole clip's: each piece is embedded
        with `patch_embed.temporal_halo` frames of its neighbours on each side (the conv stem's 3-frame kernel reads
        across the cut) and the halo's tokens are dropped."""
        frames, per_token, halo = video.shape[2], self.patch_embed.frames_per_token, self.patch_embed.temporal_halo
        for start in range(0, frames - per_token + 1, chunk_frames):
            stop = min(start + chunk_frames, frames)
            low, high = max(start - halo, 0), min(stop + halo, frames)
            x = self.patch_embed(video[:, :, low:high])  # [B, D, t'', h, w]
            first = (start - low) // per_token
            yield self.encode_grid(x[:, :, first:first + (stop - start) // per_token])  # this piece's t' tokens


class TemporalTransformer(Encoder):
    """Frame features [B, t', D] -> embedding [B, D] (pooled per `config.temporal_pool`)."""

    def __init__(self, config: ViViTConfig):
        t, _, _ = config.token_grid
        super().__init__(config, t, config.temporal_depth, config.temporal_heads, config.temporal_mlp)
        self.pool = config.temporal_pool
        self.frames_per_token = config.tubelet[0]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[1] != self.num_tokens:
            raise ValueError(f"ViViT: {frames.shape[1]} frame tokens ({frames.shape[1] * self.frames_per_token} "
                             f"frames), but the temporal position embeddings are sized for {self.num_tokens} "
                             f"({self.num_tokens * self.frames_per_token} frames; build with num_frames)")
        x = self.encode(frames)  # [B, 1+t', D]
        return x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1)  # [B, D]


class TubeletEmbed(nn.Module):
    """video [B, C, T, H, W] -> [B, D, t', h, w]: one Conv3D, kernel = stride = the tubelet (no overlap), or the
    early-convolution stem with the tubelet as its stride (`config.stem`)."""

    def __init__(self, config: ViViTConfig):
        super().__init__()
        self.frames_per_token = config.tubelet[0]
        if config.stem == "conv":
            self.proj = ConvStem(config.in_chans, config.stem_channels, config.embed_dim, config.tubelet)
            # Frames a cut needs from each neighbour so that the tokens beside it equal the whole clip's: the
            # stem's 3-frame kernel reaches one frame across; a whole token keeps the stride's phase.
            self.temporal_halo = self.frames_per_token
        else:
            self.proj = nn.Conv3d(config.in_chans, config.embed_dim, config.tubelet, stride=config.tubelet)
            self.temporal_halo = 0  # kernel = stride: tokens never read across a tubelet

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video)


class Adapter(nn.Module):
    """SFA's adapter, frame features [B, t', D] -> [B, t', D]: x + fc2(gelu(fc1 x)) with fc2 zero-initialised
    (residual), or fc2(gelu(fc1 x)) (plain). Hidden width D. The module docstring says why."""

    def __init__(self, dim: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.mlp = Mlp(dim, dim)

    def reset_parameters(self) -> None:
        if self.residual:
            nn.init.zeros_(self.mlp.fc2.weight)
            nn.init.zeros_(self.mlp.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x) if self.residual else self.mlp(x)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, config: ViViTConfig, drop_path: float):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, config)
        self.drop_path = DropPath(drop_path)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, config: ViViTConfig):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attention_impl = config.attention_impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)  # rows: q, k, v (timm's order)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, -1)  # [B, L, 3*D] -> [B, L, 3, h, dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, L, dh]
        if self.attention_impl == "fused":
            x = pooling_attention(q, k, v, residual=None, scale=self.scale)  # [B, h, L, dh]
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # [B, h, L, L], materialised
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(B, L, D)  # [B, h, L, dh] -> [B, L, h*dh]
        return self.proj(x)


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)  # timm's and Scenic's ViT epsilon


def _build(config: ViViTConfig, *, num_frames: Optional[int] = None, crop_size: Optional[int] = None,
           drop_path_rate: Optional[float] = None, activation_checkpointing: Optional[bool] = None,
           adapter: Optional[str] = None, **options) -> ViViT:
    """The contract's runtime keywords (None keeps the size's own value) and `options`: ViViTConfig fields
    (`temporal_depth`, `temporal_pool`, `tubelet_init`, `attention_impl`, ... from `model.arch_options`)."""
    runtime = {"num_frames": num_frames, "crop_size": crop_size, "drop_path_rate": drop_path_rate,
               "adapter": adapter}
    config = with_options(config, {**options, **{k: v for k, v in runtime.items() if v is not None}})
    return ViViT(config, activation_checkpointing=bool(activation_checkpointing))


@register_model
def vivit_fe_b(**kwargs) -> ViViT:
    """ViViT-B factorised encoder, 32x224x224, tubelet 2x16x16: spatial 12 layers, 768 wide, 12 heads, MLP 3072;
    temporal 4 layers of the same width.

    The ViViT paper gives FE-B 115.1 M params and 284.4 GFLOPs (multiply-adds) per view. Counted here
    (FlopCounterMode on the meta device, attention_impl="explicit"): 114.76 M params (-0.3%), 283.34 GMACs
    (-0.4%). The paper's parameters include a Kinetics-400 classifier (768 x 400 + 400 = 0.31 M: 115.06 M), so 4
    temporal layers is what its count implies (each temporal layer is 7.09 M). The 1.06 GMACs (0.4%) left are not
    explained here: the elementwise work PyTorch's counter skips is about 0.4 G elements, too little to be all of
    it. Stochastic depth 0.2 as in the co-finetuning paper."""
    return _build(ViViTConfig(drop_path_rate=0.2), **kwargs)


@register_model
def vivit_fe_l(**kwargs) -> ViViT:
    """ViViT-L factorised encoder, 32x224x224, tubelet 2x16x16: spatial 24 layers, 1024 wide, 16 heads, MLP 4096;
    temporal 4 layers. The ViViT paper's FE-B of 115.1 M params implies 4 temporal layers (see vivit_fe_b);
    Scenic's public K400 ViViT-L FE config uses 24 temporal layers (16 heads, MLP 4096). Temporal depth is a config
    field: `temporal_depth=24` (model.arch_options) gives Scenic's. Counted as vivit_fe_b: 354.5 M params,
    988.2 GMACs (4 temporal layers; each temporal layer adds 12.6 M params)."""
    return _build(ViViTConfig(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096, drop_path_rate=0.2), **kwargs)


@register_model
def vivit_fe_h(**kwargs) -> ViViT:
    """ViViT-H factorised encoder, 32x224x224, tubelet 2x16x16: spatial 32 layers, 1280 wide, 16 heads, MLP 5120
    (the SFA-ViViT paper's H); temporal 4 layers (`temporal_depth`, see vivit_fe_l). Counted as vivit_fe_b:
    710.6 M params, 2041 GMACs."""
    return _build(ViViTConfig(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120, drop_path_rate=0.2), **kwargs)


@register_model
def vivit_fe_tiny(**kwargs) -> ViViT:
    """CPU demo size: 8x64x64 clips -> a 4x8x8 token grid (stride 2x8x8; 16x16 patches would leave 4x4 on a 64-px
    crop, too coarse for the demo's small objects); 96 wide, 4 heads, MLP 384; 4 spatial, 2 temporal layers.

    Early convolutions (`stem="conv"`) instead of the 2x8x8 tubelet embedding, as mvitv2_tiny, whose patchify stem
    learns the demo corpus far worse from scratch (README, "Design choices, measured").
    """
    return _build(ViViTConfig(embed_dim=96, depth=4, num_heads=4, mlp_dim=384, temporal_depth=2,
                              tubelet=(2, 8, 8), stem="conv", num_frames=8, crop_size=64), **kwargs)


__all__ = ["ViViT", "ViViTConfig", "Adapter", "SpatialTransformer", "TemporalTransformer", "vivit_fe_b",
           "vivit_fe_l", "vivit_fe_h", "vivit_fe_tiny"]
