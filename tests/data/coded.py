"""Tiny synthetic VP9 videos whose pixels say which frame they are.

Frame t of a "coded" video is flat grey at level 16 + 7 t, so a decoded (and cropped, resized, flipped) frame
still tells its index: round((mean - 16) / 7). Levels are 7 apart, well above the few levels that colour
conversion (DALI vs FFmpeg) and VP9 move a flat frame. "Pattern" videos add a static horizontal ramp, so a crop
or a flip shows up as a change in the spatial pattern while the level still moves with t.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LEVEL0, LEVEL_STEP = 16, 7


def write_vp9(path: Path, frames: np.ndarray, fps: int = 25, gop: int = 10) -> Path:
    """Encode uint8 frames [N, H, W, 3] as VP9 in WebM with a key frame every `gop` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"g": str(gop), "keyint_min": str(gop), "deadline": "realtime", "cpu-used": "8",
                          "lossless": "1"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_vfr_vp9(path: Path, frames: np.ndarray, times_ms: list[int], fps: int = 25, gop: int = 4) -> Path:
    """Variable frame rate: frame k presented at `times_ms[k]` (irregular), the stream's nominal rate `fps`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"g": str(gop), "keyint_min": str(gop), "deadline": "realtime", "cpu-used": "8",
                          "lossless": "1"}
        for image, time in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = time, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def coded_frames(count: int, height: int = 48, width: int = 64, ramp: int = 0) -> np.ndarray:
    """Frame t flat at LEVEL0 + LEVEL_STEP t, plus a static left-to-right ramp of `ramp` levels."""
    levels = LEVEL0 + LEVEL_STEP * np.arange(count, dtype=np.float64)
    ramp_x = np.linspace(0, ramp, width)
    frames = levels[:, None, None] + ramp_x[None, None, :] + np.zeros((1, height, 1))
    return np.repeat(np.clip(frames, 0, 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def frame_index(level: np.ndarray) -> np.ndarray:
    """Inverse of the flat code: 0-255 levels -> frame indices."""
    return np.round((np.asarray(level, dtype=np.float64) - LEVEL0) / LEVEL_STEP).astype(np.int64)
