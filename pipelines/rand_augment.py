"""timm's RandAugment (`rand-mM-nN-mstdS-inc1`) and torchvision-style colour jitter as DALI ops on uint8 clips.

DALI's own `auto_aug.rand_augment` draws ops and magnitudes with DALI's generator, from magnitude bins, with every
chosen op always applied; timm's applies each op with probability 0.5, draws the magnitude from N(M, S) and has the
"increasing" variants. So the choices are drawn in numpy by the plan (dalitrain/data/augment.py: op ids, with -1
for a skipped slot, and each op's parameter) and this module only executes them: for each of the N layers, a
per-sample `if` chain on the op id (DALI conditionals split the batch by sample) runs one op with its parameter.

The pointwise ops come from DALI's `auto_aug.augmentations` (their `.op`, the function without DALI's magnitude-bin
plumbing), which follow PIL's definitions, except equalize and sharpness, written here on `fn.equalize` /
`fn.filter` (the augmentations call their deprecated `fn.experimental` names). The geometric ops (rotate, shear,
translate) are not here: `augment.geometry` composes them into one inverse map, which the graph's crop applies in the
same warp that crops and scales the source frame.

Differences from PySlowFast, whose ops are PIL's on the source frames before its crop: DALI's warps have no bicubic
mode (PySlowFast warps with AUG.INTERPOLATION, bicubic), so the geometric ops are bilinear; they turn about the
crop's centre and translate by a share of the crop, reading the source frame beyond the crop where it has pixels
(the fill colour only beyond the frame); they run before the pointwise ops of the draw whatever their drawn order
(a pointwise op drawn before a warp then also changes the fill colour); equalize follows OpenCV's formula;
sharpness also filters the 1-pixel border (PIL keeps it). Each op runs on every frame of a clip with the same
parameter; equalize, auto-contrast and contrast compute their statistics per frame, as PIL does on PySlowFast's
per-frame images.
"""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.auto_aug import augmentations as aug

FILL = 128  # PySlowFast's _FILL: what rotate, shear and translate bring in (the graph's crop warp)
_BLUR = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13  # PIL's SMOOTH filter
_IDENTITY = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
_UNSHARP = _BLUR - _IDENTITY


def _beside(video, param):
    """`param` on the clip's device: a GPU op's tensor inputs live on the GPU (the plan's values arrive on the CPU)."""
    return param.gpu() if video.device == "gpu" else param


def _run_op(video, op, value):
    """Op `op` (its index in dalitrain.data.augment.RAND_OPS) with parameter `value` on a uint8 FHWC clip; the
    geometric ops never arrive here (the graph's crop warp applies them)."""
    if op == 0:
        video = aug.auto_contrast.op(video, None)
    elif op == 1:
        video = fn.equalize(video)
    elif op == 2:
        video = aug.invert.op(video, None)
    elif op == 4:  # value: the mask of the bits kept
        video = aug.posterize.op(video, _beside(video, fn.cast(value, dtype=types.UINT8)))
    elif op == 5:
        video = aug.solarize.op(video, _beside(video, value))
    elif op == 6:
        video = aug.solarize_add.op(video, _beside(video, fn.cast(value, dtype=types.UINT8)))
    elif op == 7:
        video = aug.color.op(video, value)
    elif op == 8:
        video = aug.contrast.op(video, _beside(video, value))
    elif op == 9:
        video = aug.brightness.op(video, value)
    elif op == 10:  # PIL: blend(smoothed, image, factor), one 3x3 kernel
        kernel = (1.0 - value) * types.Constant(_UNSHARP) + types.Constant(_IDENTITY)
        video = fn.filter(video, _beside(video, kernel))
    return video


def rand_augment(video, ops, values, layers: int):
    """video uint8 [F, H, W, C]; ops [N] int32 (geometric ones SKIPPED: `augment.pointwise`) and values [N]
    float32 per sample (N == layers)."""
    for layer in range(layers):
        video = _run_op(video, ops[layer], values[layer])
    return video


def color_jitter(video, factors):
    """factors [3] per sample: brightness, contrast, saturation (torchvision's ColorJitter, in that order)."""
    video = aug.brightness.op(video, factors[0])
    video = aug.contrast.op(video, _beside(video, factors[1]))
    return aug.color.op(video, factors[2])
