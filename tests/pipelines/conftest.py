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
import pytest

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


def coded_frames(count: int, height: int = 48, width: int = 64, ramp: int = 0) -> np.ndarray:
    """Frame t flat at LEVEL0 + LEVEL_STEP t, plus a static left-to-right ramp of `ramp` levels."""
    levels = LEVEL0 + LEVEL_STEP * np.arange(count, dtype=np.float64)
    ramp_x = np.linspace(0, ramp, width)
    frames = levels[:, None, None] + ramp_x[None, None, :] + np.zeros((1, height, 1))
    return np.repeat(np.clip(frames, 0, 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def frame_index(level: np.ndarray) -> np.ndarray:
    """Inverse of the flat code: 0-255 levels -> frame indices."""
    return np.round((np.asarray(level, dtype=np.float64) - LEVEL0) / LEVEL_STEP).astype(np.int64)


@pytest.fixture(scope="session")
def coded_video(tmp_path_factory) -> Path:
    """30 flat-coded frames, 64x48, key frame every 10."""
    return write_vp9(tmp_path_factory.mktemp("videos") / "coded.webm", coded_frames(30))


def make_corpus(root: Path) -> dict:
    """Four tiny datasets as the config expects them: manifests under `root`, videos under `root/<name>`.

    clipset: flat-coded, `clip` sampling; ssv2: flat-coded, `uniform`, no flip; trimmed: flat-coded, `segment`
    (CSV frames 8..20); ramps: ramp-patterned, `clip`, flip allowed. Returns DatasetConfig keyword dicts.
    """
    specs = {"clipset": (5, 30, 0), "ssv2": (3, 30, 0), "trimmed": (2, 30, 0), "ramps": (4, 20, 120)}
    datasets = {}
    for name, (count, frames, ramp) in specs.items():
        for i in range(count):
            write_vp9(root / name / f"v{i}.webm", coded_frames(frames, ramp=ramp))
        if name == "trimmed":
            lines = ["path,label,start_frame,end_frame"] + [f"v{i}.webm,{i % 2},8,20" for i in range(count)]
        else:
            lines = [f"v{i}.webm {i % 2}" for i in range(count)]
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
        datasets[name] = dict(name=name, manifest=f"{name}.txt", val_manifest=f"{name}.txt", root=name,
                              num_classes=2, sampling={"ssv2": "uniform", "trimmed": "segment"}.get(name, "clip"),
                              flip=name != "ssv2")
    return datasets


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


@pytest.fixture(scope="session")
def read_frame_index():
    """`frame_index` for test modules (pytest's importlib mode cannot import conftest)."""
    return frame_index
