"""The DALI graph: clip frames in, augmented and normalised C,T,H,W clips out. One graph for train and eval.

Inputs arrive per sample through `external_source` (the sampling plan in dalitrain/data/sampling.py decides
them, so a resumed run sees exactly the same batches):
- `frames`: the decoded clip, uint8 [T, H, W, 3] (layout FHWC) when the loader decodes on the CPU, or
  `encoded` (the file's bytes) + `frame_ids` [T] when the graph decodes itself (NVDEC on a GPU, or DALI's CPU
  decoder as the `dali` strategy);
- `short_side` (float), `crop_anchor` (2 floats: position of the crop along the long and the short side, in
  [0, 1]) and `flip` (bool): the clip's random augmentation, identical for all of its frames.

Augmentation crops before it resizes: the crop window is computed in source pixels from the random short side,
so `fn.resize` reads only the window (`roi_start`/`roi_end`) and writes crop x crop pixels, never the whole
resized frame. `fn.crop_mirror_normalize` then flips, normalises and transposes to C,T,H,W in one pass. The
resize writes float directly, and the external source reads the decoded frames without a copy (`no_copy`: the
loader keeps them alive until `run()` returns); README, "Design choices, measured".
"""
from __future__ import annotations

from typing import Optional, Sequence

from nvidia.dali import fn, pipeline_def, types
import nvidia.dali.math as dmath


def crop_window(video, short_side, crop_anchor, crop_size: int):
    """ROI in source pixels ([y0, x0], [y1, x1]) of a crop_size square after scaling the short side (the box
    of decode.Window, in DALI arithmetic)."""
    shape = fn.cast(video.shape(), dtype=types.FLOAT)  # [F, H, W, C]
    height, width = shape[1], shape[2]
    window = crop_size * dmath.min(height, width) / short_side  # the crop's size before resizing
    win_h, win_w = dmath.min(window, height), dmath.min(window, width)
    tall = fn.cast(height > width, dtype=types.FLOAT)
    along_long, along_short = crop_anchor[0], crop_anchor[1]
    y0 = (tall * along_long + (1 - tall) * along_short) * (height - win_h)
    x0 = ((1 - tall) * along_long + tall * along_short) * (width - win_w)
    return fn.stack(y0, x0), fn.stack(y0 + win_h, x0 + win_w)


@pipeline_def(enable_conditionals=True)  # auto_aug selects its ops with `if`
def clip_pipeline(*, device: str, decode_in_graph: bool, training: bool, crop_size: int,
                  mean: Sequence[float], std: Sequence[float], auto_augment: Optional[str] = None,
                  resize_in_graph: bool = True):
    """`device` "cpu" or "gpu": where augmentation runs. With `decode_in_graph`, decoding runs in the graph too
    (on the GPU: NVDEC through the "mixed" backend); otherwise the frames come decoded from the loader. Without
    `resize_in_graph` the loader's decoder already cropped and scaled them to crop_size (decode.WINDOWED), and
    the graph has no `short_side` and `crop_anchor` inputs."""
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
    augment = training and auto_augment
    if resize_in_graph:
        short_side = fn.external_source(name="short_side", dtype=types.FLOAT, ndim=0)
        crop_anchor = fn.external_source(name="crop_anchor", dtype=types.FLOAT, ndim=1)
        roi_start, roi_end = crop_window(video, short_side, crop_anchor, crop_size)
        # auto_aug's ops (posterize, equalize, ...) need uint8; otherwise float saves a rounding pass
        video = fn.resize(video, size=[crop_size, crop_size], roi_start=roi_start, roi_end=roi_end,
                          interp_type=types.INTERP_LINEAR, dtype=types.UINT8 if augment else types.FLOAT)
    if augment:
        video = _auto_augment(video, auto_augment)
    return fn.crop_mirror_normalize(video, mirror=fn.cast(flip, dtype=types.INT32), dtype=types.FLOAT,
                                    output_layout="CFHW", mean=[255 * m for m in mean],
                                    std=[255 * s for s in std])


def _auto_augment(video, policy: str):
    """DALI's auto_aug on a whole clip: one op with one magnitude per sample, so every frame gets the same."""
    from nvidia.dali.auto_aug import rand_augment, trivial_augment

    if policy == "rand_augment":
        return rand_augment.rand_augment(video, n=2, m=9)
    return trivial_augment.trivial_augment_wide(video)
