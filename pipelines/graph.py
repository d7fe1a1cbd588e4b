"""The DALI graph: clip frames in, augmented and normalised C,T,H,W clips out. One graph for train and eval.

Inputs arrive per sample through `external_source` (the sampling plan in dalitrain/data/sampling.py decides
them, so a resumed run sees exactly the same batches):
- `frames`: the decoded clip, uint8 [T, H, W, 3] (layout FHWC) when the loader decodes on the CPU, or
  `encoded` (the file's bytes) + `frame_ids` [T] when the graph decodes itself (NVDEC on a GPU, or DALI's CPU
  decoder as the `dali` strategy);
- `roi` (4 floats: top, left, bottom, right in source pixels: the crop window, computed by the loader from the
  plan's draws and the frame size, `decode.Window.box` or `augment.ResizedCrop.box`) and `flip` (bool): the clip's
  spatial augmentation, identical for all of its frames;
- with `data.augment`'s ops on (dalitrain/data/augment.py): `color` [3] factors; RandAugment's `ra_ops` /
  `ra_values` [N] (its pointwise ops, pipelines/rand_augment.py) and `warp` (bool) + `matrix` [2, 3] (its
  rotations, shears and translations composed with the crop, `augment.geometry`); `erase_box` [4] int32 (top, left,
  height, width; height 0: none) and `erase_fill` [3, T, h, w] float32 (the values the box gets).

Augmentation crops before it resizes: `fn.resize` reads only the window (`roi_start`/`roi_end`) and writes
crop x crop pixels, never the whole resized frame. RandAugment's geometric ops join the crop in one
`fn.warp_affine` from the source frame, in place of the resize: one resampling instead of two, 1.6x a resize's cost
where resize then warp cost 2.5x (README, "Design choices, measured"). Colour jitter and RandAugment then run on
the uint8 crop, and `fn.crop_mirror_normalize` flips, normalises and transposes to C,T,H,W in one pass. Random
erasing comes last, on the normalised clip as in PySlowFast: DALI's `fn.erase` fills a box with one constant, so
the box is zeroed and the fill added, placed by `fn.slice` with a negative anchor (the padding around it is 0).
The resize writes float directly when nothing needs uint8 after it, and the external source reads the decoded
frames without a copy (`no_copy`: the loader keeps them alive until `run()` returns); README, "Design choices,
measured".
"""
from __future__ import annotations

from typing import Sequence

from nvidia.dali import fn, pipeline_def, types

from dalitrain.pipelines.rand_augment import FILL, color_jitter, rand_augment

INTERPOLATION = {"linear": types.INTERP_LINEAR, "cubic": types.INTERP_CUBIC}


@pipeline_def(enable_conditionals=True)  # RandAugment picks its ops and erasing its clips with `if`
def clip_pipeline(*, device: str, decode_in_graph: bool, training: bool, crop_size: int,
                  mean: Sequence[float], std: Sequence[float], resize_in_graph: bool = True,
                  interpolation: str = "linear", color: bool = False, rand_augment_layers: int = 0,
                  erase: bool = False):
    """`device` "cpu" or "gpu": where augmentation runs. With `decode_in_graph`, decoding runs in the graph too
    (on the GPU: NVDEC through the "mixed" backend); otherwise the frames come decoded from the loader. Without
    `resize_in_graph` the loader's decoder already cropped and scaled them to crop_size (all but the samples that
    warp: their whole frames arrive for the warp), and the graph has no `roi` input. `color`,
    `rand_augment_layers` and `erase` (training only) add those ops and their inputs."""
    if decode_in_graph:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, no_copy=True)
        frame_ids = fn.external_source(name="frame_ids", dtype=types.INT32, ndim=1)
        # --- GPU-only branch: NVDEC decodes in the "mixed" backend; everything below is shared ---
        video = fn.decoders.video(encoded, frames=frame_ids, pad_mode="edge",
                                  device="mixed" if device == "gpu" else "cpu")
    else:
        video = fn.external_source(name="frames", dtype=types.UINT8, ndim=4, layout="FHWC", no_copy=True)
        if device == "gpu":  # --- GPU-only: augment on the GPU ---
            video = video.gpu()
    flip = fn.external_source(name="flip", dtype=types.BOOL, ndim=0)
    color, rand_augment_layers, erase = (color, rand_augment_layers, erase) if training else (False, 0, False)
    # colour jitter and RandAugment's ops (posterize, equalize, ...) need uint8; otherwise float saves a pass
    dtype = types.UINT8 if color or rand_augment_layers else types.FLOAT
    if resize_in_graph:
        roi = fn.external_source(name="roi", dtype=types.FLOAT, ndim=1)
    if rand_augment_layers:
        # a clip whose RandAugment draw rotates, shears or translates is cropped, scaled and moved by one warp
        # (the inverse map `matrix` [2, 3], x before y, from the loader) instead of the resize
        warped = fn.external_source(name="warp", dtype=types.BOOL, ndim=0)
        matrix = fn.external_source(name="matrix", dtype=types.FLOAT, ndim=2)
        if warped:
            video = fn.warp_affine(video, matrix=matrix, size=[crop_size, crop_size], fill_value=FILL,
                                   interp_type=types.INTERP_LINEAR, inverse_map=True, dtype=dtype)
        elif resize_in_graph:
            video = _resize(video, roi, crop_size, interpolation, dtype)
    elif resize_in_graph:
        video = _resize(video, roi, crop_size, interpolation, dtype)
    if color:
        video = color_jitter(video, fn.external_source(name="color", dtype=types.FLOAT, ndim=1))
    if rand_augment_layers:
        ops = fn.external_source(name="ra_ops", dtype=types.INT32, ndim=1)
        values = fn.external_source(name="ra_values", dtype=types.FLOAT, ndim=1)
        video = rand_augment(video, ops, values, rand_augment_layers)
    video = fn.crop_mirror_normalize(video, mirror=fn.cast(flip, dtype=types.INT32), dtype=types.FLOAT,
                                     output_layout="CFHW", mean=[255 * m for m in mean],
                                     std=[255 * s for s in std])
    if erase:
        video = _erase(video, fn.external_source(name="erase_box", dtype=types.INT32, ndim=1),
                       fn.external_source(name="erase_fill", dtype=types.FLOAT, ndim=4, layout="CFHW"))
    return video


def _resize(video, roi, crop_size: int, interpolation: str, dtype):
    """The crop window `roi` (top, left, bottom, right) of every frame scaled to crop_size x crop_size."""
    return fn.resize(video, size=[crop_size, crop_size], roi_start=roi[0:2], roi_end=roi[2:4],
                     interp_type=INTERPOLATION[interpolation], dtype=dtype)


def _erase(video, box, fill):
    """video [C, F, H, W]: the box (top, left, height, width) of every frame replaced by `fill` [C, F, h, w]."""
    if box[2] > 0:
        if video.device == "gpu":  # --- GPU-only: the fill, drawn on the CPU, joins the clip ---
            fill = fill.gpu()
        anchor, shape = fn.cast(box[0:2], dtype=types.FLOAT), fn.cast(box[2:4], dtype=types.FLOAT)
        video = fn.erase(video, anchor=anchor, shape=shape, axis_names="HW", fill_value=0.0,
                         normalized_anchor=False, normalized_shape=False)
        # the fill placed at the box in a zero canvas of the frame's size: a slice starting before it
        video = video + fn.slice(fill, -anchor, fn.cast(video.shape()[2:4], dtype=types.FLOAT), axis_names="HW",
                                 normalized_anchor=False, normalized_shape=False, out_of_bounds_policy="pad",
                                 fill_values=0.0)
    return video
