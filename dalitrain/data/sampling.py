"""Sampling plans: which dataset, which video, which frames and which augmentation for every sample of an epoch.

Everything a batch will contain is decided here, in numpy, from (seed, epoch) alone, before any video is read:
- the per-sample random augmentation parameters too (short side, crop anchor, flip), so the DALI graph takes them
  as op inputs. That makes a run resumed at step k produce exactly the batches k, k+1, ... of the uninterrupted run
  (DALI's own random ops would restart their generator on resume), and lets tests check plans without DALI.
- the frame indices of each clip, through four policies (`clip_indices`, `uniform_indices`, segments, clips
  centred on an annotated keyframe), plus the multi-view evaluation layout (`eval_plan`).
- sharding: every rank gets the same number of batches of the same size; the stream is padded with duplicates
  flagged `valid=False` so that metrics can exclude them (and no DDP rank waits for a batch that never comes).

Mixing (`mixed`: every batch mixes datasets; `per_batch`: a batch comes from one dataset, picked `weighted` by
size or `alternating` round robin) follows MultiTrain and co-finetuning (see shared/anchors.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Sequence

import numpy as np

from dalitrain.data.augment import ClipAugment, draw_clip_augment
from dalitrain.errors import UsageError

if TYPE_CHECKING:
    from dalitrain.config import AugmentConfig


@dataclass(frozen=True)
class VideoRecord:
    """One manifest row with what sampling needs to know about its video."""

    path: Path
    label: int
    row: int  # manifest row: the `index` of the Batch
    frames: int  # frame count from the scan index or the probe
    segment: Optional[tuple[int, int]] = None  # [start, end) in frames, for trimmed segments
    keyframe: Optional[int] = None  # the annotated frame a localisation sample's clip is centred on
    size: Optional[tuple[int, int]] = None  # (height, width) of the frames: the crop window when the graph decodes


@dataclass(frozen=True)
class DatasetRecords:
    """A dataset's playable videos (quarantined ones removed) and how clips are taken from them."""

    name: str
    videos: list[VideoRecord]
    sampling: Literal["clip", "uniform", "segment", "keyframe"] = "clip"
    flip: bool = True
    weight: Optional[float] = None
    # localisation: per video (keyframe) its person boxes and what the loader needs to move them with the clip
    boxes: Optional[list["KeyframeBoxes"]] = None


@dataclass(frozen=True)
class KeyframeBoxes:
    """A localisation sample's boxes: [N, 4] x1, y1, x2, y2 normalised to the frame, their multi-hot actions
    [N, A] (zeros for proposals), the frame's (height, width) and the keyframe's AVA key (video id, second)."""

    boxes: np.ndarray
    labels: np.ndarray
    frame_hw: tuple[int, int]
    video_id: str
    timestamp: int


@dataclass(frozen=True)
class ClipRecipe:
    num_frames: int
    stride: int
    short_video: Literal["pad", "loop"] = "pad"


@dataclass(frozen=True)
class Sample:
    """Everything the decoder and the augmentation graph need for one output clip."""

    dataset: int  # index into the config's datasets
    video: int  # position in DatasetRecords.videos
    frames: np.ndarray  # [T] int64 frame indices to decode, in output order
    short_side: float  # the clip's short side after resizing (before the crop)
    crop_anchor: tuple[float, float]  # crop position in [0, 1] along the (long, short) side
    flip: bool
    valid: bool = True
    augment: Optional[ClipAugment] = None  # the optional ops' draws (training with data.augment on)


# A short side so small that the crop window covers the whole frame (the crop is clipped to the frame), which is
# then scaled to crop x crop: how localisation is evaluated, so that no ground-truth box is cut off.
FULL_FRAME = 1e-3


# ---------------------------------------------------------------------------------------------------------
# Frame-index policies


def clip_indices(video_frames: int, recipe: ClipRecipe, start: int) -> np.ndarray:
    """T frames at `stride` from `start`; past the video's end: repeat the last frame (pad) or wrap (loop)."""
    wanted = start + recipe.stride * np.arange(recipe.num_frames, dtype=np.int64)
    if recipe.short_video == "loop":
        return wanted % video_frames
    return np.minimum(wanted, video_frames - 1)


def clip_span(recipe: ClipRecipe) -> int:
    return (recipe.num_frames - 1) * recipe.stride + 1


def clip_start(video_frames: int, recipe: ClipRecipe, rng: Optional[np.random.Generator],
               view: int = 0, num_views: int = 1) -> int:
    """Random start in training (rng given); in eval, view k of N starts at k x floor(free / (N - 1)), the centre
    for N = 1 (PySlowFast's DATA.USE_OFFSET_SAMPLING, which MultiTrain's released configs set)."""
    free = max(video_frames - clip_span(recipe), 0)
    if rng is not None:
        return int(rng.integers(0, free + 1))
    if num_views == 1:
        return free // 2
    return view * (free // (num_views - 1))


def uniform_indices(video_frames: int, num_frames: int, rng: Optional[np.random.Generator],
                    view: int = 0, num_views: int = 1) -> np.ndarray:
    """SSv2 protocol: split the video into T equal segments and take one frame from each.

    Training jitters the frame uniformly inside its segment; eval takes the point (k + 0.5) / N of each segment
    for view k of N (the centre when N == 1). Videos shorter than T repeat frames.
    """
    seg = video_frames / num_frames
    offset = rng.random(num_frames) if rng is not None else np.full(num_frames, (view + 0.5) / num_views)
    frames = np.floor(seg * (np.arange(num_frames) + offset)).astype(np.int64)
    return np.clip(frames, 0, video_frames - 1)


def keyframe_indices(video_frames: int, recipe: ClipRecipe, centre: int) -> np.ndarray:
    """T frames at the stride centred on frame `centre`, as PySlowFast's AVA clips (`range(centre - T * stride / 2,
    centre + T * stride / 2, stride)`), clamped to the video (edge frames repeat)."""
    start = centre - (recipe.num_frames * recipe.stride) // 2
    return np.clip(start + recipe.stride * np.arange(recipe.num_frames), 0, max(video_frames - 1, 0))


def sample_frames(video: VideoRecord, policy: str, recipe: ClipRecipe, rng: Optional[np.random.Generator],
                  view: int = 0, num_views: int = 1) -> np.ndarray:
    """The frame indices of one clip under the dataset's policy (`clip`, `uniform`, `segment`)."""
    if policy == "uniform":
        return uniform_indices(video.frames, recipe.num_frames, rng, view, num_views)
    if policy == "keyframe":
        return keyframe_indices(video.frames, recipe, video.keyframe)
    first, end = video.segment if policy == "segment" and video.segment else (0, video.frames)
    end = min(end, video.frames)
    first = min(first, end - 1)
    length = end - first
    return first + clip_indices(length, recipe, clip_start(length, recipe, rng, view, num_views))


# ---------------------------------------------------------------------------------------------------------
# Training plans


def dataset_weights(datasets: Sequence[DatasetRecords]) -> np.ndarray:
    """Sampling probability per dataset: explicit weights where given, otherwise the dataset's size."""
    raw = np.array([d.weight if d.weight is not None else len(d.videos) for d in datasets], dtype=np.float64)
    if raw.sum() <= 0:
        raise UsageError("every dataset has zero weight or no playable videos")
    return raw / raw.sum()


class _Cycler:
    """Hands out a dataset's videos in shuffled order, reshuffling each time the list is used up."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.order = rng.permutation(size)
        self.pos = 0

    def take(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            if self.pos == self.size:
                self.order, self.pos = self.rng.permutation(self.size), 0
            out.append(int(self.order[self.pos]))
            self.pos += 1
        return out


def _mixed_datasets(datasets: Sequence[DatasetRecords], epoch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Dataset of each sample: a shuffled exact share when weights are sizes and the epoch is their sum,
    i.i.d. draws from the weights otherwise."""
    sizes = [len(d.videos) for d in datasets]
    if all(d.weight is None for d in datasets) and epoch_size == sum(sizes):
        return rng.permutation(np.repeat(np.arange(len(datasets)), sizes))
    return rng.choice(len(datasets), size=epoch_size, p=dataset_weights(datasets))


def _batch_datasets(datasets: Sequence[DatasetRecords], steps: int, policy: str,
                    rng: np.random.Generator) -> np.ndarray:
    """Dataset of each global batch: round robin (`alternating`) or drawn by weight (`weighted`)."""
    if policy == "alternating":
        return np.arange(steps) % len(datasets)
    return rng.choice(len(datasets), size=steps, p=dataset_weights(datasets))


def train_plan(datasets: Sequence[DatasetRecords], recipe: ClipRecipe, *, batch_size: int,
               short_side: Sequence[int], mixing: str = "mixed", batch_policy: str = "weighted",
               epoch_size: Optional[int] = None, seed: int = 0, epoch: int = 0,
               shard_id: int = 0, num_shards: int = 1, augment: Optional[AugmentConfig] = None,
               crop_size: int = 224, num_samples: int = 1) -> list[list[Sample]]:
    """This rank's batches for one epoch; identical on every rank apart from the slice each one takes.

    One epoch is `epoch_size` samples (default: the sum of the dataset sizes) split into
    ceil(epoch_size / (batch_size * num_shards)) global steps; the tail of the last step repeats earlier samples
    flagged invalid. With `num_samples` k > 1 (repeated augmentation) the epoch draws clips instead, k times fewer
    per batch, and each clip becomes k adjacent samples with the same frames and their own augmentation: each
    video is still visited once per epoch (by default), and an epoch holds k times the samples.
    `augment`'s draws come from a generator of their own, so that turning them on leaves every other draw as it was.
    """
    rng = np.random.default_rng([seed, epoch])
    augment_rng = np.random.default_rng([seed, epoch, 1])
    clip_batch = batch_size // num_samples
    total = (epoch_size // num_samples if epoch_size else None) or sum(len(d.videos) for d in datasets)
    global_batch = clip_batch * num_shards
    steps = max(math.ceil(total / global_batch), 1)
    cyclers = [_Cycler(len(d.videos), rng) for d in datasets]
    if mixing == "mixed":
        ds_of_sample = _mixed_datasets(datasets, total, rng)
    else:
        ds_of_sample = np.repeat(_batch_datasets(datasets, steps, batch_policy, rng), global_batch)[:total]
    picks = [(int(d), cyclers[d].take(1)[0]) for d in ds_of_sample]
    padded = steps * global_batch
    # per_batch pads with more videos of the batch's own dataset so a batch never mixes datasets
    pad_from = picks if mixing == "mixed" else [(picks[-1][0], v) for v in cyclers[picks[-1][0]].take(padded - total)]
    picks += [pad_from[i % len(pad_from)] for i in range(padded - total)]
    samples = []
    for i, (d, v) in enumerate(picks):
        clip = _train_sample(datasets, d, v, recipe, short_side, rng, valid=i < total)
        samples.append(_augmented(clip, augment, augment_rng, crop_size))
        samples.extend(_augmented(_redraw_spatial(clip, datasets, short_side, augment_rng), augment, augment_rng,
                                  crop_size) for _ in range(num_samples - 1))
    return [samples[s * global_batch * num_samples + shard_id * batch_size:
                    s * global_batch * num_samples + (shard_id + 1) * batch_size] for s in range(steps)]


def _train_sample(datasets: Sequence[DatasetRecords], d: int, v: int, recipe: ClipRecipe,
                  short_side: Sequence[int], rng: np.random.Generator, valid: bool) -> Sample:
    ds = datasets[d]
    frames = sample_frames(ds.videos[v], ds.sampling, recipe, rng)
    return _redraw_spatial(Sample(d, v, frames, 0.0, (0.0, 0.0), False, valid), datasets, short_side, rng)


def _redraw_spatial(s: Sample, datasets: Sequence[DatasetRecords], short_side: Sequence[int],
                    rng: np.random.Generator) -> Sample:
    """`s` with a new random short side, crop position and flip (the same frames)."""
    side = float(rng.integers(short_side[0], short_side[1] + 1))
    anchor = (float(rng.random()), float(rng.random()))
    flip = bool(rng.random() < 0.5) and datasets[s.dataset].flip
    return replace(s, short_side=side, crop_anchor=anchor, flip=flip)


def _augmented(s: Sample, augment: Optional[AugmentConfig], rng: np.random.Generator, crop_size: int) -> Sample:
    return s if augment is None else replace(s, augment=draw_clip_augment(rng, augment, crop_size))


def replacement_video(dataset: DatasetRecords, failed: set[int], seed: int, epoch: int, position: int) -> int:
    """A deterministic stand-in for a video that failed to decode: another playable video of the same dataset."""
    playable = [i for i in range(len(dataset.videos)) if i not in failed]
    if not playable:
        raise RuntimeError(f"dataset {dataset.name}: no playable video left")
    return playable[int(np.random.default_rng([seed, epoch, position]).integers(len(playable)))]


# ---------------------------------------------------------------------------------------------------------
# Evaluation plans


def spatial_anchors(num_views: int) -> list[float]:
    """Crop positions along the long side: left/top, centre, right/bottom for 3 views (PySlowFast)."""
    return [0.5] if num_views == 1 else list(np.linspace(0.0, 1.0, num_views))


def eval_plan(datasets: Sequence[DatasetRecords], recipe: ClipRecipe, *, batch_size: int, short_side: int,
              temporal_views: int, spatial_views: int, shard_id: int = 0, num_shards: int = 1) -> list[list[Sample]]:
    """This rank's eval batches: each video of each dataset once across ranks, as temporal x spatial views.

    Videos are dealt to ranks round robin (all views of one video stay on one rank, so its softmax can be
    averaged locally or after a gather); ranks with fewer views pad with invalid duplicates so all ranks take
    the same number of steps.
    """
    per_rank: list[list[Sample]] = [[] for _ in range(num_shards)]
    position = 0
    for d, ds in enumerate(datasets):
        for v, video in enumerate(ds.videos):
            if ds.sampling == "keyframe":  # one view of the whole frame: the boxes are where they were annotated
                views = [Sample(d, v, sample_frames(video, ds.sampling, recipe, None), FULL_FRAME, (0.5, 0.5), False)]
            else:
                views = [Sample(d, v, sample_frames(video, ds.sampling, recipe, None, t, temporal_views),
                                float(short_side), (anchor, 0.5), False)
                         for t in range(temporal_views) for anchor in spatial_anchors(spatial_views)]
            per_rank[position % num_shards].extend(views)
            position += 1
    longest = max(len(samples) for samples in per_rank)
    steps = max(math.ceil(longest / batch_size), 1)
    mine = per_rank[shard_id] or [replace(per_rank[0][0], valid=False)]  # fewer videos than ranks
    padding = [replace(mine[i % len(mine)], valid=False) for i in range(steps * batch_size - len(per_rank[shard_id]))]
    stream = per_rank[shard_id] + padding
    return [stream[s * batch_size:(s + 1) * batch_size] for s in range(steps)]
