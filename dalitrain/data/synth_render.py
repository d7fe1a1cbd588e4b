"""Render one synthetic video from its factors and encode it with PyAV.

A `Clip` holds everything that decides the pixels: the label-relevant `Factors`, the dataset's visual `Domain`,
the frame size and count, the frames during which the object acts, and a seed for the continuous nuisance
(positions, travel, rotation amount, scale range, background, distractors, noise). Rendering is pure numpy and
deterministic for a seed.

Screen coordinates have y pointing down, so an angle that grows turns a shape clockwise on screen. Nuisance
ranges are symmetric under mirroring and time reversal (a left-to-right slide from a to b has the same
distribution as the reverse of a right-to-left slide, a growing object spans the same sizes as a shrinking one),
so that a frame-averaged view cannot tell a class from its mirror or reverse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from dalitrain.data.synth_factors import SHAPES, Factors

RGB = tuple[int, int, int]

# --codec -> (PyAV encoder, container format, file suffix)
CODECS = {"vp9": ("libvpx-vp9", "webm", ".webm"), "vp8": ("libvpx", "webm", ".webm"), "mjpeg": ("mjpeg", "avi", ".avi")}
# libvpx's fastest settings: no look-ahead, realtime deadline, cpu-used 8. One thread per encoder (the generator
# runs one process per core), which also keeps the bytes identical from run to run.
VPX_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "crf": "30", "b": "0"}
DISC_MOUTH = np.tan(0.5)  # half-angle (radians) of the wedge cut out of the disc, as a slope


@dataclass(frozen=True)
class Domain:
    """A dataset's visual style: how its backgrounds, clutter and noise look."""
    background: str  # flat | gradient | stripes | blotches
    background_colours: tuple[RGB, ...]  # muted colours, far from the saturated object palette
    noise: float  # std of the per-frame luma noise, in 0-255 units
    distractors: tuple[int, int]  # inclusive range of grey distractor objects drifting across the frame
    object_size: tuple[float, float]  # object radius range as a fraction of the short side


@dataclass(frozen=True)
class Clip:
    factors: Factors
    domain: Domain
    width: int
    height: int
    num_frames: int
    action: tuple[int, int]  # frames [start, end) in which the object is present and acts
    seed: int


@dataclass(frozen=True)
class ObjectPath:
    """Per action frame: centre, radius and angle of the object (arrays of length end - start)."""
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray


def _lerp(a: float, b: float, u: np.ndarray) -> np.ndarray:
    return a + (b - a) * u


def object_path(factors: Factors, width: int, height: int, length: int, base_radius: float,
                rng: np.random.Generator) -> ObjectPath:
    """Trajectory of the object over `length` frames: position from the motion, size from the scale change."""
    u = np.linspace(0.0, 1.0, length)
    centre_x, centre_y = rng.uniform(0.4, 0.6) * width, rng.uniform(0.35, 0.65) * height
    angle0 = rng.uniform(0, 2 * np.pi)
    x, y, angle = np.full(length, centre_x), np.full(length, centre_y), np.full(length, angle0)
    if factors.motion == "translate":
        half = rng.uniform(0.2, 0.3) * width
        x = _lerp(centre_x - factors.direction * half, centre_x + factors.direction * half, u)
        y = _lerp(centre_y, rng.uniform(0.35, 0.65) * height, u)
    elif factors.motion == "bounce":
        half = rng.uniform(0.12, 0.2) * width
        x = _lerp(centre_x - factors.direction * half, centre_x + factors.direction * half, u)
        # two hops on a floor; a random phase keeps the hops symmetric under time reversal
        y = 0.72 * height - rng.uniform(0.25, 0.35) * height * np.abs(np.sin(2 * np.pi * u + rng.uniform(0, np.pi)))
    elif factors.motion == "rotate":
        angle = angle0 + factors.direction * rng.uniform(0.8, 1.4) * np.pi * u
    small = base_radius * 0.7
    large = small * rng.uniform(1.7, 2.2)
    radius = {"none": np.full(length, base_radius), "grow": _lerp(small, large, u),
              "shrink": _lerp(large, small, u)}[factors.scale]
    return ObjectPath(x, y, radius, angle)


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Boolean mask of `shape` (circumradius `radius`, turned by `angle`) at offsets dx [1, w], dy [h, 1]."""
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, dy * cos - dx * sin  # offsets in the shape's own frame
    if shape == "disc":
        mouth = (u > 0) & (np.abs(v) < u * DISC_MOUTH)
        return (u * u + v * v < radius * radius) & ~mouth
    if shape == "square":
        half_side = radius * 0.8  # a little inside the circumcircle so all shapes have similar areas
        return (np.abs(u) < half_side) & (np.abs(v) < half_side)
    if shape == "triangle":  # equilateral, one vertex along the shape's x axis; inradius = radius / 2
        inside = np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
        for normal in (np.pi / 3, np.pi, 5 * np.pi / 3):
            inside &= u * np.cos(normal) + v * np.sin(normal) < radius / 2
        return inside
    raise ValueError(f"unknown shape {shape!r}")


def paint(frame: np.ndarray, shape: str, x: float, y: float, radius: float, angle: float, rgb) -> None:
    """Draw a shape into frame [H, W, 3] in place, touching only its bounding box."""
    height, width = frame.shape[:2]
    x0, x1 = max(0, int(x - radius - 1)), min(width, int(x + radius + 2))
    y0, y1 = max(0, int(y - radius - 1)), min(height, int(y + radius + 2))
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - x)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - y)[:, None]
    frame[y0:y1, x0:x1][shape_mask(shape, dx, dy, radius, angle)] = rgb


def background(domain: Domain, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Static background [H, W, 3] float32: two of the domain's colours mixed by the domain's pattern."""
    first, second = rng.choice(len(domain.background_colours), size=2, replace=False)
    c1 = np.array(domain.background_colours[first], dtype=np.float32)
    c2 = np.array(domain.background_colours[second], dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    short = min(width, height)
    direction = rng.uniform(0, 2 * np.pi)  # any orientation, so mirroring gives an equally likely background
    along = (xs * np.cos(direction) + ys * np.sin(direction)) / short
    if domain.background == "flat":
        mix = np.zeros_like(xs)
    elif domain.background == "gradient":
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif domain.background == "stripes":
        mix = ((along / rng.uniform(0.15, 0.3)) % 1.0 < 0.5).astype(np.float32)
    elif domain.background == "blotches":
        mix = np.zeros_like(xs)
        for _ in range(4):
            cx, cy, sigma = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.3) * short
            mix += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma * sigma))
        mix = np.clip(mix, 0, 1)
    else:
        raise ValueError(f"unknown background style {domain.background!r}")
    return c1 + mix[..., None] * (c2 - c1)


def render_frames(clip: Clip) -> Iterator[np.ndarray]:
    """The clip's frames, each [H, W, 3] uint8 RGB, one at a time (long videos never sit in memory whole)."""
    rng = np.random.default_rng(clip.seed)
    width, height, short = clip.width, clip.height, min(clip.width, clip.height)
    scene = background(clip.domain, width, height, rng)
    start, end = clip.action
    base_radius = rng.uniform(*clip.domain.object_size) * short
    path = object_path(clip.factors, width, height, end - start, base_radius, rng)
    distractors = []
    for _ in range(rng.integers(clip.domain.distractors[0], clip.domain.distractors[1] + 1)):
        grey = float(rng.uniform(70, 190))
        distractors.append((SHAPES[rng.integers(len(SHAPES))], rng.uniform(0.05, 0.09) * short,
                            rng.uniform(0, 2 * np.pi), (grey, grey, grey),
                            rng.uniform((0, 0), (width, height)), rng.uniform((0, 0), (width, height))))
    for t in range(clip.num_frames):
        frame = scene.copy()
        u = t / max(clip.num_frames - 1, 1)
        for shape, radius, angle, rgb, first, last in distractors:
            x, y = first + (last - first) * u
            paint(frame, shape, x, y, radius, angle, rgb)
        if start <= t < end:
            i = t - start
            paint(frame, clip.factors.shape, path.x[i], path.y[i], path.radius[i], path.angle[i],
                  clip.factors.colour.rgb)
        if clip.domain.noise:
            frame += rng.standard_normal((height, width, 1), dtype=np.float32) * clip.domain.noise
        yield np.clip(frame, 0, 255).astype(np.uint8)


def encode(frames: Iterable[np.ndarray], path: str | Path, width: int, height: int, fps: int, codec: str,
           gop: int) -> None:
    """Encode RGB frames to `path` atomically: a crash leaves no half-written file under the final name."""
    encoder, container_format, _ = CODECS[codec]
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    # bitexact: no encoder version string in the file, so the bytes only depend on the frames
    with av.open(str(partial), "w", format=container_format, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        stream.options = {"q:v": "3"} if codec == "mjpeg" else dict(VPX_OPTIONS)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(partial, path)
