"""Latent factors of the synthetic corpus, the label function of each dataset, and their exact relations.

Every synthetic video is drawn from discrete *label-relevant* factors (`Factors`: shape, motion type, direction,
scale change, colour) plus continuous nuisance (positions, speed, angles, background, noise, distractors) that
the renderer draws itself. A dataset is a `FactorPrior` (weights of each factor value, its own palette, and
which combinations it allows) together with a label function `Factors -> class name`. Each label function is
total over every combination any dataset can produce, so that "what would dataset j call a video of dataset i"
always has an answer: that is the ground-truth relation the projection heads should rediscover.

Sampling is class-balanced: a video of class `a` of dataset `i` has factors drawn from the prior restricted to
that class, P_i(f | a) = w_i(f) [label_i(f) = a] / sum of those weights. The relation from i to j is then exact:

    P(label_j = b | label_i = a) = sum_f P_i(f | a) [label_j(f) = b]

computed by enumerating the (small) discrete support, never by sampling.
"""
from __future__ import annotations

import colorsys
import functools
import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SHAPES = ("disc", "square", "triangle")  # the disc has a wedge cut out so that its rotation is visible
MOTIONS = ("static", "translate", "rotate", "bounce")
MOTION_VERBS = {"static": "staying", "translate": "sliding", "rotate": "spinning", "bounce": "bouncing"}
# +1: left to right (translate, bounce drift) or clockwise on screen (rotate); -1: the mirror/reverse.
DIRECTIONS = (1, -1)
SCALES = ("none", "grow", "shrink")  # grow = approaching the camera, shrink = receding


@dataclass(frozen=True)
class Colour:
    name: str
    rgb: tuple[int, int, int]

    @property
    def warm(self) -> bool:
        """Reds, oranges, yellows and magentas (hue below 75 degrees or from 300 degrees)."""
        hue = colorsys.rgb_to_hsv(*(c / 255 for c in self.rgb))[0] * 360
        return hue < 75 or hue >= 300


@dataclass(frozen=True)
class Factors:
    """The label-relevant factors of one video."""
    shape: str
    motion: str
    direction: int
    scale: str
    colour: Colour

    def to_dict(self) -> dict:
        return {"shape": self.shape, "motion": self.motion, "direction": self.direction, "scale": self.scale,
                "colour": self.colour.name, "rgb": list(self.colour.rgb)}


def _allow_all(factors: Factors) -> bool:
    return True


@dataclass(frozen=True)
class FactorPrior:
    """Unnormalised weights of each factor value in one dataset; a value left out has weight 0."""
    palette: tuple[Colour, ...]
    shapes: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SHAPES, 1.0))
    motions: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MOTIONS, 1.0))
    scales: dict[str, float] = field(default_factory=lambda: {"none": 1.0})
    allowed: Callable[[Factors], bool] = _allow_all  # a module-level function, so jobs stay picklable

    def support(self) -> list[tuple[Factors, float]]:
        """Every allowed factor combination with its weight (directions are equally likely)."""
        combos = itertools.product(self.shapes.items(), self.motions.items(), DIRECTIONS, self.scales.items(),
                                   self.palette)
        support = []
        for (shape, w_shape), (motion, w_motion), direction, (scale, w_scale), colour in combos:
            factors = Factors(shape, motion, direction, scale, colour)
            weight = w_shape * w_motion * w_scale * 0.5
            if weight > 0 and self.allowed(factors):
                support.append((factors, weight))
        return support


# ---- label functions: one per dataset, each a different function of the same factors ----

def shape_and_motion(f: Factors) -> str:
    return f"{f.shape}_{MOTION_VERBS[f.motion]}"


def motion_only(f: Factors) -> str:
    return MOTION_VERBS[f.motion]


def temporal_direction(f: Factors) -> str:
    """Something-Something style: reversing time or mirroring the frames changes every moving class.

    A scale change dominates (a sliding object that grows is "approaching"); a bounce is named by its drift.
    """
    if f.scale != "none":
        return "approaching" if f.scale == "grow" else "receding"
    if f.motion in ("translate", "bounce"):
        return "moving_left_to_right" if f.direction > 0 else "moving_right_to_left"
    if f.motion == "rotate":
        return "turning_clockwise" if f.direction > 0 else "turning_counterclockwise"
    return "holding_still"


def colour_and_motion(f: Factors) -> str:
    return f"{'warm' if f.colour.warm else 'cool'}_{MOTION_VERBS[f.motion]}"


TEMPORAL_DIRECTION_CLASSES = ("moving_left_to_right", "moving_right_to_left", "approaching", "receding",
                              "turning_clockwise", "turning_counterclockwise", "holding_still")


@dataclass(frozen=True)
class LabelSpace:
    """One dataset's semantics: its prior over factors, its label function and its class names (ids = order)."""
    prior: FactorPrior
    label_of: Callable[[Factors], str]
    classes: tuple[str, ...]

    def label(self, factors: Factors) -> int:
        return self.classes.index(self.label_of(factors))

    @functools.cached_property
    def class_support(self) -> list[list[tuple[Factors, float]]]:
        """Per class id, the factor combinations of that class with their weights; every class must occur."""
        per_class: list[list[tuple[Factors, float]]] = [[] for _ in self.classes]
        for factors, weight in self.prior.support():
            per_class[self.label(factors)].append((factors, weight))
        empty = [name for name, combos in zip(self.classes, per_class) if not combos]
        if empty:
            raise ValueError(f"classes {empty} have no factor combination in their prior")
        return per_class

    def sample(self, label: int, rng: np.random.Generator) -> Factors:
        """Factors of a video of class `label`, drawn from the prior restricted to that class."""
        combos = self.class_support[label]
        weights = np.array([w for _, w in combos])
        return combos[rng.choice(len(combos), p=weights / weights.sum())][0]


def relation(source: LabelSpace, target: LabelSpace) -> np.ndarray:
    """[C_source, C_target] matrix of P(target label = b | source label = a) for videos of the source dataset."""
    matrix = np.zeros((len(source.classes), len(target.classes)))
    for a, combos in enumerate(source.class_support):
        for factors, weight in combos:
            matrix[a, target.label(factors)] += weight
    return matrix / matrix.sum(axis=1, keepdims=True)
