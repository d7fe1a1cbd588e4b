"""The built-in synthetic multi-dataset corpus: a small stand-in for Kinetics + Moments + SSv2 + ActivityNet.

Four datasets share one generator (`synth_factors`: latent factors and label functions; `synth_render`: pixels)
but each exposes a different function of the factors as its labels and has its own visual domain:

| dataset          | labels                                   | domain                          | used with          |
|------------------|------------------------------------------|---------------------------------|--------------------|
| kinetics_like    | shape x motion type (12)                 | gradients, 4:3, longest clips   | clip sampling      |
| moments_like     | motion type (4)                          | stripes, square, 1-2 s clips    | clip sampling      |
| ssv2_like        | direction in time and mirror (7)         | flat, wide                      | uniform, no flip   |
| activitynet_like | colour warmth x motion type (8)          | blotches, 16:9, long videos     | segment sampling   |

ssv2_like's classes come in pairs that are each other's mirror image or time reversal (left-to-right /
right-to-left, approaching / receding, clockwise / counter-clockwise), so flipping or reversing the frames
changes the label and averaging the frames over time cannot tell the pair apart. In activitynet_like videos the
object appears only inside the annotated segment; before and after it the scene holds distractors only.

Presets (`PRESETS`): `demo` (small videos, 2,624 train videos, about 80 s on 2 cores), `demo_unequal` (the same
videos at very unequal training sizes, for co-finetuning's batch sampling), `bench` (short side
256, 25 fps, 10 s Kinetics-like clips, a key frame every 25 frames; few videos, for throughput) and `tiny` (for
the test suite).

Layout written under `out_dir`:

    corpus.json                 {"preset", "seed", "codec", "complete", "datasets": {name: {"classes": [...],
                                 "train": n, "val": n, "sampling", "flip", "width", "height", "fps"}}}
    relations.json              {"classes": {name: [class names]},
                                 "relations": {i: {j: [[P(label_j = b | label_i = a) for b] for a]}}}
                                 for every ordered pair i != j; rows sum to 1. Exact: computed from the factor
                                 distributions of dataset i's generator (synth_factors.relation), not sampled.
    <name>/classes.txt          one class name per line (line number = label id)
    <name>/train.txt, val.txt   `path label` lines, paths relative to <name>/
                                 (activitynet_like: train.csv, val.csv with `path,label,start,end`, seconds)
    <name>/videos.jsonl         one record per video: path, split, label, factors, frames, fps, action frames
    <name>/videos/*.webm        (*.avi for mjpeg)

Deterministic for a seed: every video's factors and pixels come from a seed derived from (seed, dataset, split,
index), so the bytes do not depend on the number of workers. Resumable: finished videos are kept (each is
written under a temporary name and renamed when complete), and a rerun only makes what is missing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dalitrain.data.manifest import ManifestEntry, write_manifest
from dalitrain.data.synth_factors import (MOTION_VERBS, MOTIONS, SHAPES, TEMPORAL_DIRECTION_CLASSES, Colour,
                                          Factors, FactorPrior, LabelSpace, colour_and_motion, motion_only,
                                          relation, shape_and_motion, temporal_direction)
from dalitrain.data.synth_render import CODECS, Clip, Domain, encode, render_frames
from dalitrain.errors import InputError, UsageError
from dalitrain.fileio import write_atomic

SPLITS = ("train", "val")


def _still_unless_static(factors: Factors) -> bool:
    """ssv2_like: only objects that stay in place change scale, so every class is one clean motion."""
    return factors.scale == "none" or factors.motion == "static"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    space: LabelSpace
    domain: Domain
    sampling: str  # the config's sampling policy for this dataset: clip | uniform | segment
    flip: bool  # whether horizontal flipping keeps labels valid
    segments: bool = False  # the action fills only an annotated part of each video


DATASETS = (
    DatasetSpec(
        "kinetics_like",
        LabelSpace(FactorPrior(palette=(Colour("red", (220, 40, 40)), Colour("orange", (240, 140, 20)),
                                        Colour("yellow", (235, 215, 30)), Colour("green", (40, 190, 60)),
                                        Colour("blue", (40, 90, 230)), Colour("magenta", (210, 50, 200))),
                               scales={"none": 0.6, "grow": 0.2, "shrink": 0.2}),
                   shape_and_motion, tuple(f"{s}_{MOTION_VERBS[m]}" for s in SHAPES for m in MOTIONS)),
        Domain("gradient", ((110, 120, 100), (150, 140, 120), (90, 100, 120), (170, 165, 150)),
               noise=3.0, distractors=(0, 2), object_size=(0.12, 0.18)),
        sampling="clip", flip=True),
    DatasetSpec(
        "moments_like",
        LabelSpace(FactorPrior(palette=(Colour("pink", (250, 80, 150)), Colour("lime", (150, 230, 40)),
                                        Colour("cyan", (30, 200, 220)), Colour("gold", (230, 170, 20))),
                               scales={"none": 0.5, "grow": 0.25, "shrink": 0.25}),
                   motion_only, tuple(MOTION_VERBS[m] for m in MOTIONS)),
        Domain("stripes", ((60, 60, 75), (95, 95, 110), (50, 70, 70), (110, 105, 95)),
               noise=5.0, distractors=(1, 3), object_size=(0.14, 0.2)),
        sampling="clip", flip=True),
    DatasetSpec(
        "ssv2_like",
        LabelSpace(FactorPrior(palette=(Colour("red", (200, 30, 30)), Colour("green", (30, 160, 60)),
                                        Colour("blue", (30, 60, 200)), Colour("yellow", (230, 200, 20)),
                                        Colour("purple", (130, 50, 200))),
                               motions={"static": 1.0, "translate": 1.0, "rotate": 1.0},
                               scales={"none": 1.0, "grow": 1.0, "shrink": 1.0}, allowed=_still_unless_static),
                   temporal_direction, TEMPORAL_DIRECTION_CLASSES),
        Domain("flat", ((185, 175, 160), (160, 150, 140), (200, 195, 185), (140, 135, 130)),
               noise=2.0, distractors=(0, 1), object_size=(0.13, 0.17)),
        sampling="uniform", flip=False),
    DatasetSpec(
        "activitynet_like",
        LabelSpace(FactorPrior(palette=(Colour("red", (230, 50, 30)), Colour("orange", (250, 120, 30)),
                                        Colour("yellow", (240, 220, 60)), Colour("blue", (50, 110, 240)),
                                        Colour("cyan", (40, 210, 200)), Colour("green", (60, 200, 90))),
                               scales={"none": 0.8, "grow": 0.1, "shrink": 0.1}),
                   colour_and_motion, tuple(f"{t}_{MOTION_VERBS[m]}" for t in ("warm", "cool") for m in MOTIONS)),
        Domain("blotches", ((90, 110, 80), (120, 130, 100), (100, 100, 100), (140, 145, 120)),
               noise=4.0, distractors=(1, 3), object_size=(0.1, 0.15)),
        sampling="segment", flip=True, segments=True),
)
DATASETS_BY_NAME = {spec.name: spec for spec in DATASETS}


@dataclass(frozen=True)
class Geometry:
    """A dataset's size in one preset."""
    width: int
    height: int
    fps: int
    frames: tuple[int, int]  # inclusive range of frames per video
    train_per_class: int
    val_per_class: int


@dataclass(frozen=True)
class Preset:
    gop: int  # key frame interval: short GOPs make clip seeking cheap, as in a pre-resized corpus
    geometry: dict[str, Geometry]


PRESETS = {
    # For the test suite: seconds to make, still long enough for 8 frames at stride 2.
    "tiny": Preset(8, {"kinetics_like": Geometry(80, 60, 8, (20, 20), 2, 1),
                       "moments_like": Geometry(64, 64, 8, (16, 16), 2, 1),
                       "ssv2_like": Geometry(80, 60, 8, (16, 16), 2, 1),
                       "activitynet_like": Geometry(96, 54, 8, (40, 48), 1, 1)}),
    # For `dalitrain demo`: about 80 s on 2 cores. With a quarter of these training videos (same val), the
    # patch-embedding tiny MViT fitted kinetics_like's training clips (train loss 2.48 -> 2.03 in 300 steps) while
    # its val stayed at chance; the demo trains on 4x as many distinct videos in the same number of steps.
    "demo": Preset(12, {"kinetics_like": Geometry(128, 96, 12, (40, 40), 80, 6),
                        "moments_like": Geometry(80, 80, 12, (20, 20), 120, 8),
                        "ssv2_like": Geometry(112, 80, 12, (24, 24), 96, 8),
                        "activitynet_like": Geometry(128, 72, 12, (72, 108), 64, 5)}),
    # For `dalitrain demo --recipe cofinetune`: the demo's videos (same seeds, so the same val sets) at very unequal
    # training sizes, as co-finetuning's datasets are (MiT 800k, K400 240k, SSv2 220k clips, AVA far fewer), so that
    # size-weighted and alternating batch sampling differ: moments_like 1,440, kinetics_like 960, ssv2_like 336,
    # activitynet_like 96 training videos (15x from largest to smallest). With 168 ssv2_like videos (6% of the
    # weighted batches) the co-finetuning demo ended two runs with ssv2_like at 1.8x and 2.4x chance.
    "demo_unequal": Preset(12, {"kinetics_like": Geometry(128, 96, 12, (40, 40), 80, 6),
                                "moments_like": Geometry(80, 80, 12, (20, 20), 360, 8),
                                "ssv2_like": Geometry(112, 80, 12, (24, 24), 48, 8),
                                "activitynet_like": Geometry(128, 72, 12, (72, 108), 12, 5)}),
    # For throughput benchmarks: like a pre-resized Kinetics (short side 256, 25 fps, a key frame a second).
    "bench": Preset(25, {"kinetics_like": Geometry(340, 256, 25, (250, 250), 2, 1),
                         "moments_like": Geometry(256, 256, 25, (75, 75), 4, 2),
                         "ssv2_like": Geometry(384, 256, 25, (100, 100), 3, 1),
                         "activitynet_like": Geometry(456, 256, 25, (375, 500), 2, 1)}),
}


@dataclass(frozen=True)
class PlannedVideo:
    dataset: str
    split: str
    path: str  # relative to the dataset's folder
    label: int
    fps: int
    clip: Clip

    def record(self) -> dict:
        return {"path": self.path, "split": self.split, "label": self.label,
                "factors": self.clip.factors.to_dict(), "frames": self.clip.num_frames, "fps": self.fps,
                "action": list(self.clip.action)}


def plan_dataset(spec: DatasetSpec, geometry: Geometry, seed: int, suffix: str) -> list[PlannedVideo]:
    """Every video of a dataset, train then val, classes interleaved (video k has label k mod C)."""
    dataset_index = DATASETS.index(spec)
    videos = []
    for split_index, split in enumerate(SPLITS):
        per_class = geometry.train_per_class if split == "train" else geometry.val_per_class
        for k in range(per_class * len(spec.space.classes)):
            rng = np.random.default_rng([seed, dataset_index, split_index, k])
            label = k % len(spec.space.classes)
            factors = spec.space.sample(label, rng)
            frames = int(rng.integers(geometry.frames[0], geometry.frames[1] + 1))
            action = (0, frames)
            if spec.segments:
                length = int(frames * rng.uniform(0.35, 0.6))
                start = int(rng.integers(0, frames - length + 1))
                action = (start, start + length)
            clip = Clip(factors, spec.domain, geometry.width, geometry.height, frames, action,
                        seed=int(rng.integers(2**63)))
            videos.append(PlannedVideo(spec.name, split, f"videos/{split}_{k:05d}{suffix}", label,
                                       geometry.fps, clip))
    return videos


def relations_table() -> dict:
    """The layout of relations.json (see the module docstring)."""
    return {"classes": {spec.name: list(spec.space.classes) for spec in DATASETS},
            "relations": {source.name: {target.name: relation(source.space, target.space).tolist()
                                        for target in DATASETS if target is not source}
                          for source in DATASETS}}


def _make_video(video: PlannedVideo, path: Path, codec: str, gop: int) -> None:
    encode(render_frames(video.clip), path, video.clip.width, video.clip.height, video.fps, codec, gop)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def _check_same_corpus(corpus_json: Path, settings: dict) -> None:
    """Resuming into a folder made with other settings would mix two corpora: refuse with one line."""
    if not corpus_json.exists():
        return
    try:
        previous = json.loads(corpus_json.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{corpus_json}: not valid JSON; delete it or choose another output folder") from None
    old = {key: previous.get(key) for key in settings}
    if old != settings:
        raise InputError(f"{corpus_json}: folder holds a corpus made with {old}, not {settings}; "
                         "choose another output folder")


def _write_dataset_files(folder: Path, spec: DatasetSpec, videos: list[PlannedVideo]) -> None:
    (folder / "classes.txt").write_text("\n".join(spec.space.classes) + "\n")
    for split in SPLITS:
        entries = []
        for video in (v for v in videos if v.split == split):
            start, end = video.clip.action
            segment = (start / video.fps, end / video.fps) if spec.segments else (None, None)
            entries.append(ManifestEntry(video.path, video.label, len(entries), *segment))
        write_manifest(folder / f"{split}{'.csv' if spec.segments else '.txt'}", entries)
    with open(folder / "videos.jsonl", "w") as out:
        out.writelines(json.dumps(video.record()) + "\n" for video in videos)


def _summary(preset: str) -> dict:
    """corpus.json's per-dataset entry: classes, split sizes, how to sample it, frame size and rate."""
    summary = {}
    for spec in DATASETS:
        geometry = PRESETS[preset].geometry[spec.name]
        classes = len(spec.space.classes)
        summary[spec.name] = {"classes": list(spec.space.classes), "train": geometry.train_per_class * classes,
                              "val": geometry.val_per_class * classes, "sampling": spec.sampling,
                              "flip": spec.flip, "width": geometry.width, "height": geometry.height,
                              "fps": geometry.fps}
    return summary


def generate_corpus(out_dir: str | Path, preset: str = "demo", seed: int = 0, codec: str = "vp9",
                    workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Generate (or finish) the corpus in `out_dir`; returns {dataset: {"classes", "train", "val"}}.

    `progress(done, total)` is called after each video made in this run.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if codec not in CODECS:
        raise UsageError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    if seed < 0 or (workers is not None and workers < 1):
        raise UsageError(f"seed must be >= 0 and workers >= 1, got seed={seed}, workers={workers}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out_dir}: cannot create the output folder ({err.strerror})") from None
    settings = {"preset": preset, "seed": seed, "codec": codec}
    _check_same_corpus(out_dir / "corpus.json", settings)
    plans = {spec.name: plan_dataset(spec, PRESETS[preset].geometry[spec.name], seed, CODECS[codec][2])
             for spec in DATASETS}
    summary = _summary(preset)
    _write_json(out_dir / "corpus.json", {**settings, "complete": False, "datasets": summary})
    _write_json(out_dir / "relations.json", relations_table())

    todo = []
    for name, videos in plans.items():
        (out_dir / name / "videos").mkdir(parents=True, exist_ok=True)
        todo += [(v, out_dir / name / v.path) for v in videos if not (out_dir / name / v.path).exists()]
    # longest first, so that no worker is left with one long video at the end
    todo.sort(key=lambda job: -job[0].clip.num_frames * job[0].clip.width * job[0].clip.height)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    gop = PRESETS[preset].gop
    if workers == 1:
        for done, (video, path) in enumerate(todo, start=1):
            _make_video(video, path, codec, gop)
            if progress:
                progress(done, len(todo))
    else:
        # spawn, not fork: callers (the demo, tests) may already run torch or DALI threads
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_make_video, video, path, codec, gop) for video, path in todo]
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progress:
                    progress(done, len(todo))

    for spec in DATASETS:
        _write_dataset_files(out_dir / spec.name, spec, plans[spec.name])
    _write_json(out_dir / "corpus.json", {**settings, "complete": True, "datasets": summary})
    return {name: {key: info[key] for key in ("classes", "train", "val")} for name, info in summary.items()}
