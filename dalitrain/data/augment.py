"""A training clip's random augmentation beyond short side, crop position and flip, drawn in numpy by the plan.

Every random number is drawn here, per sample, from the plan's generator of (seed, epoch), and the DALI graph
(dalitrain/pipelines/graph.py, rand_augment.py) takes the results as op inputs, so a resumed run repeats every
augmentation exactly. What is drawn follows PySlowFast's MViTv2 recipe, which MultiTrain's released configs use
(`slowfast/datasets/kinetics.py` and the files it calls):

- **Random-resized crop** (`ResizedCrop`; `transform._get_param_spatial_crop`): an area share in `area` of the
  frame and an aspect ratio log-uniform in `aspect`, up to 10 attempts until the box fits the frame, then a centred
  box of the nearest allowed aspect. The attempts are drawn before the frame size is known (decoders learn it when
  they open the file), and `box(height, width)` replays PySlowFast's loop on them.
- **Colour jitter** (`color_jitter: x`): brightness, contrast and saturation factors uniform in [1 - x, 1 + x]
  (torchvision's ColorJitter, applied in that fixed order rather than torchvision's random order).
- **RandAugment** from timm's string `rand-mM-nN[-mstdS][-incI]` (`RandAugmentSpec`): N ops chosen with
  replacement from 15, each applied with probability 0.5, with a magnitude drawn from N(M, S) clipped to [0, 10]
  and a random sign where the op has one; `inc1` takes the ops whose strength increases with the magnitude. One draw
  per clip: every frame gets the same ops (PySlowFast applies each op to the list of frames). Each op's magnitude
  becomes its parameter here (`op_value`, timm's `*_level_to_arg`).
- **Random erasing** (`random_erasing.RandomErasing`, its default `cube=True`): with probability `erase_prob` one box
  of area share U(0.02, 1/3) and aspect log-uniform in [0.3, 1/0.3] (up to 100 attempts) through every frame of the
  clip, filled after normalisation with N(0, 1) noise per pixel (`pixel`), per channel (`rand`) or zeros (`const`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from dalitrain.config import AugmentConfig

RESIZED_CROP_ATTEMPTS = 10  # PySlowFast's num_repeat
ERASE_ATTEMPTS = 100  # RandomErasing._erase_cube's
ERASE_AREA = (0.02, 1 / 3)
ERASE_LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
MAX_LEVEL = 10.0  # timm's _MAX_LEVEL: magnitudes are in [0, 10]

# timm's _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS, in timm's order; the position is the op's id in the
# graph (`pipelines/rand_augment.py`), where a Posterize* or Solarize* variant runs the same op
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
SKIPPED = -1  # an op slot whose probability draw said no
GEOMETRIC = frozenset(RAND_OPS.index(name) for name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"))


@dataclass(frozen=True)
class RandAugmentSpec:
    layers: int  # N
    magnitude: float  # M, in [0, 10]
    magnitude_std: float = 0.0  # S
    increasing: bool = False

    @classmethod
    def parse(cls, text: str) -> "RandAugmentSpec":
        """timm's `rand-m9-n2-mstd0.5-inc1` (timm's defaults: m10, n2, mstd0, inc0). PySlowFast's copy reads `inc0`
        as increasing too (`bool("0")`); here `inc0` means what it says, as in timm."""
        parts = text.split("-")
        if parts[0] != "rand":
            raise ValueError(f"{text!r} is not timm's rand-mM-nN[-mstdS][-incI]")
        fields = {"m": 10.0, "n": 2.0, "mstd": 0.0, "inc": 0.0}
        for part in parts[1:]:
            match = re.fullmatch(r"(mstd|m|n|inc)(\d+(?:\.\d+)?)", part)
            if not match:
                raise ValueError(f"{text!r}: cannot read {part!r} (known: m, n, mstd, inc)")
            fields[match.group(1)] = float(match.group(2))
        if fields["n"] < 1 or fields["n"] != int(fields["n"]) or fields["m"] > MAX_LEVEL:
            raise ValueError(f"{text!r}: n must be a whole number >= 1 and m <= 10")
        return cls(int(fields["n"]), fields["m"], fields["mstd"], bool(fields["inc"]))


def op_value(name: str, magnitude: float, negate: bool, crop_size: int, increasing: bool) -> float:
    """The parameter of op `name` at `magnitude` in [0, 10] (timm's level_to_arg; `negate`: the random sign)."""
    level = magnitude / MAX_LEVEL
    sign = -1.0 if negate else 1.0
    if name == "Rotate":
        return sign * level * 30.0  # degrees
    if name in ("ShearX", "ShearY"):
        return sign * level * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * level * 0.45 * crop_size  # pixels of the crop the op sees
    if name == "Posterize":  # the mask of the bits kept: 4 - int(4 level) of them when increasing, else int(4 level)
        bits = 4 - int(level * 4) if increasing else int(level * 4)
        return float((0xFF << (8 - bits)) & 0xFF)
    if name == "Solarize":  # pixels at or above the threshold are inverted
        return float(256 - int(level * 256) if increasing else int(level * 256))
    if name == "SolarizeAdd":
        return float(int(level * 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):  # PIL ImageEnhance factor
        return 1.0 + sign * level * 0.9 if increasing else level * 1.8 + 0.1
    return 0.0  # AutoContrast, Equalize, Invert


@dataclass(frozen=True)
class ResizedCrop:
    """PySlowFast's random-resized crop, its random draws made in advance: `attempts` [10, 4] = (area share, aspect
    ratio w / h, vertical and horizontal position in [0, 1)); `aspect` the allowed range (the fallback's); `crop` the
    output side. Like decode.Window, `box(height, width)` gives the source pixels to scale to crop x crop."""

    attempts: np.ndarray
    aspect: tuple[float, float]
    crop: int

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, box height, box width) in source pixels."""
        for share, ratio, along_y, along_x in self.attempts:
            target = share * height * width
            box_w, box_h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < box_w <= width and 0 < box_h <= height:  # random.randint(0, n) is inclusive
                return (int(along_y * (height - box_h + 1)), int(along_x * (width - box_w + 1)), box_h, box_w)
        frame_ratio = width / height  # no attempt fitted: the centred box of the nearest allowed aspect
        box_h, box_w = height, width
        if frame_ratio < min(self.aspect):
            box_h = int(round(width / min(self.aspect)))
        elif frame_ratio > max(self.aspect):
            box_w = int(round(height * max(self.aspect)))
        return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


@dataclass(frozen=True)
class ClipAugment:
    """The per-clip draws the graph's optional ops take (None: that op is off for this run)."""

    resized_crop: Optional[ResizedCrop] = None
    color: Optional[tuple[float, float, float]] = None  # brightness, contrast, saturation factors
    ops: Optional[np.ndarray] = None  # [N] int32 RandAugment op ids (RAND_OPS), SKIPPED where not applied
    values: Optional[np.ndarray] = None  # [N] float32 their parameters (op_value)
    erase: Optional[tuple[int, int, int, int]] = None  # (top, left, height, width) in crop pixels; (0, 0, 0, 0): none


def geometry(ops: np.ndarray, values: np.ndarray, crop: int) -> Optional[np.ndarray]:
    """The RandAugment draw's rotations, shears and translations as one inverse map [3, 3] (a point of the output
    crop, in pixels with (x, y) = (0, 0) at the top left corner, to where it is read before those ops), composed in
    the order they were drawn; None when the draw has none. PIL's conventions: `transform` reads output (x, y) at
    (a x + b y + c, d x + e y + f), and `rotate(degrees)` turns counter-clockwise about the centre."""
    if not any(op in GEOMETRIC for op in ops):
        return None
    total = np.eye(3)
    for op, value in zip(ops, values):
        if op not in GEOMETRIC:
            continue
        name = RAND_OPS[op]
        if name == "Rotate":
            angle, centre = -math.radians(value), crop / 2
            cos, sin = math.cos(angle), math.sin(angle)
            step = np.array([[cos, sin, centre - cos * centre - sin * centre],
                             [-sin, cos, centre + sin * centre - cos * centre], [0, 0, 1]])
        else:
            a, b, c, d = {"ShearX": (value, 0, 0, 0), "ShearY": (0, value, 0, 0), "TranslateXRel": (0, 0, value, 0),
                          "TranslateYRel": (0, 0, 0, value)}[name]
            step = np.array([[1, a, c], [b, 1, d], [0, 0, 1]])
        total = total @ step  # op k reads the image op k - 1 left: maps compose left to right
    return total


def pointwise(ops: np.ndarray) -> np.ndarray:
    """The op ids the graph's RandAugment layers run: the geometric ones are folded into the crop's warp."""
    return np.where(np.isin(ops, list(GEOMETRIC)), SKIPPED, ops).astype(np.int32)


def draw_resized_crop(rng: np.random.Generator, area: Sequence[float], aspect: Sequence[float],
                      crop: int) -> ResizedCrop:
    n = RESIZED_CROP_ATTEMPTS
    log_aspect = np.log(np.asarray(aspect, dtype=np.float64))
    attempts = np.stack([rng.uniform(area[0], area[1], n), np.exp(rng.uniform(log_aspect[0], log_aspect[1], n)),
                         rng.random(n), rng.random(n)], axis=1)
    return ResizedCrop(attempts, (float(aspect[0]), float(aspect[1])), crop)


def draw_rand_augment(rng: np.random.Generator, spec: RandAugmentSpec, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(op ids, values) of N layers: ops with replacement, each kept with probability 0.5 (timm's AugmentOp)."""
    ops = rng.integers(0, len(RAND_OPS), spec.layers).astype(np.int32)
    kept = rng.random(spec.layers) <= 0.5
    magnitudes = rng.normal(spec.magnitude, spec.magnitude_std, spec.layers) if spec.magnitude_std else \
        np.full(spec.layers, spec.magnitude)
    negate = rng.random(spec.layers) > 0.5
    values = np.array([op_value(RAND_OPS[o], min(MAX_LEVEL, max(0.0, m)), n, crop, spec.increasing)
                       for o, m, n in zip(ops, magnitudes, negate)], dtype=np.float32)
    return np.where(kept, ops, SKIPPED).astype(np.int32), values


def draw_erase_box(rng: np.random.Generator, probability: float, crop: int) -> tuple[int, int, int, int]:
    """RandomErasing._erase_cube on a crop x crop clip: (top, left, h, w), or (0, 0, 0, 0) for no erasing."""
    if rng.random() > probability:
        return 0, 0, 0, 0
    for _ in range(ERASE_ATTEMPTS):
        target = rng.uniform(*ERASE_AREA) * crop * crop
        ratio = math.exp(rng.uniform(*ERASE_LOG_ASPECT))
        box_h, box_w = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if box_w < crop and box_h < crop:
            return int(rng.integers(0, crop - box_h + 1)), int(rng.integers(0, crop - box_w + 1)), box_h, box_w
    return 0, 0, 0, 0


def erase_fill(box: tuple[int, int, int, int], frames: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """[3, T, h, w] float32 values for the erased box, in normalised units (RandomErasing's _get_pixels)."""
    shape = (3, frames, box[2], box[3])
    if mode == "pixel":
        return rng.standard_normal(shape, dtype=np.float32)
    if mode == "rand":
        # one colour per channel and frame (_get_pixels runs once per frame)
        return np.ascontiguousarray(np.broadcast_to(rng.standard_normal((3, frames, 1, 1), dtype=np.float32), shape))
    return np.zeros(shape, np.float32)


def draw_clip_augment(rng: np.random.Generator, augment: "AugmentConfig", crop: int) -> Optional[ClipAugment]:
    """One training clip's draws for the ops `augment` turns on (None when it turns none on)."""
    if not augment.active():
        return None
    resized = draw_resized_crop(rng, augment.area, augment.aspect, crop) if augment.crop == "resized" else None
    jitter = augment.color_jitter
    color = tuple(float(f) for f in rng.uniform(1 - jitter, 1 + jitter, 3)) if jitter else None
    ops = values = None
    if augment.rand_augment:
        ops, values = draw_rand_augment(rng, RandAugmentSpec.parse(augment.rand_augment), crop)
    erase = draw_erase_box(rng, augment.erase_prob, crop) if augment.erase_prob else None
    return ClipAugment(resized, color, ops, values, erase)
