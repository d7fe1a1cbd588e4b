"""Sampling plans without DALI: frame-index policies, mixing, sharding, eval coverage, determinism."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dalitrain.data.sampling import (ClipRecipe, DatasetRecords, VideoRecord, clip_indices, eval_plan,
                                     sample_frames, train_plan, uniform_indices)


def make_dataset(name, size, frames=100, weight=None, sampling="clip", flip=True):
    videos = [VideoRecord(Path(f"{name}/{i}.webm"), label=i % 3, row=i, frames=frames) for i in range(size)]
    return DatasetRecords(name, videos, sampling=sampling, flip=flip, weight=weight)


RECIPE = ClipRecipe(num_frames=4, stride=3)


def test_clip_indices_stride_and_short_video_policies():
    assert clip_indices(100, RECIPE, 10).tolist() == [10, 13, 16, 19]
    assert clip_indices(8, RECIPE, 0).tolist() == [0, 3, 6, 7]  # pad: repeat the last frame
    assert clip_indices(8, ClipRecipe(4, 3, "loop"), 0).tolist() == [0, 3, 6, 1]  # loop: wrap around


def test_clip_start_is_random_in_training_and_spread_in_eval():
    video = VideoRecord(Path("v"), 0, 0, frames=30)
    rng = np.random.default_rng(0)
    starts = {int(sample_frames(video, "clip", RECIPE, rng)[0]) for _ in range(300)}
    assert starts == set(range(0, 21))  # span 10 frames: every start in [0, 20] occurs, none beyond
    views = [sample_frames(video, "clip", RECIPE, None, view=k, num_views=3).tolist() for k in range(3)]
    assert views == [[0, 3, 6, 9], [10, 13, 16, 19], [20, 23, 26, 29]]
    # PySlowFast's offset sampling, view k at k x floor(free / 2): with 21 frames free (a 31-frame video) 0, 10, 20,
    # where spreading the views over the whole range gave 0, 10, 21
    longer = VideoRecord(Path("v"), 0, 0, frames=31)
    assert [int(sample_frames(longer, "clip", RECIPE, None, view=k, num_views=3)[0]) for k in range(3)] == [0, 10, 20]


def test_uniform_takes_one_frame_per_segment():
    rng = np.random.default_rng(1)
    for _ in range(50):
        frames = uniform_indices(40, 4, rng)
        assert [f // 10 for f in frames] == [0, 1, 2, 3]
    assert uniform_indices(40, 4, None).tolist() == [5, 15, 25, 35]  # eval: segment centres
    assert uniform_indices(3, 4, None).tolist() == [0, 1, 1, 2]  # shorter than T: repeats, never crashes


def test_segment_clips_stay_inside_the_segment():
    video = VideoRecord(Path("v"), 0, 0, frames=200, segment=(50, 80))
    rng = np.random.default_rng(2)
    for _ in range(100):
        frames = sample_frames(video, "segment", RECIPE, rng)
        assert 50 <= frames.min() and frames.max() < 80
    short = VideoRecord(Path("v"), 0, 0, frames=200, segment=(50, 55))
    assert sample_frames(short, "segment", RECIPE, rng).tolist() == [50, 53, 54, 54]


def test_mixed_batches_follow_dataset_sizes_or_weights():
    datasets = [make_dataset("big", 300), make_dataset("small", 100)]
    plan = train_plan(datasets, RECIPE, batch_size=8, short_side=[40, 48], seed=0)
    counts = Counter(s.dataset for batch in plan for s in batch if s.valid)
    assert counts == {0: 300, 1: 100}  # default epoch: every video once
    assert sum(len({s.dataset for s in b}) > 1 for b in plan) > len(plan) / 2  # batches do mix
    weighted = [make_dataset("big", 300, weight=1.0), make_dataset("small", 100, weight=3.0)]
    plan = train_plan(weighted, RECIPE, batch_size=8, short_side=[40, 48], seed=0, epoch_size=4000)
    share = np.mean([s.dataset == 1 for b in plan for s in b if s.valid])
    assert abs(share - 0.75) < 0.03  # 4000 draws: 3 standard deviations ~ 0.02


def test_per_batch_weighted_and_alternating():
    datasets = [make_dataset("big", 300), make_dataset("small", 100)]
    plan = train_plan(datasets, RECIPE, batch_size=8, short_side=[40, 48], mixing="per_batch", seed=3,
                      epoch_size=8000)
    per_batch = [{s.dataset for s in b} for b in plan]
    assert all(len(d) == 1 for d in per_batch)
    share = np.mean([d == {1} for d in per_batch])
    assert abs(share - 0.25) < 0.05  # 1000 batches: 3 standard deviations ~ 0.04
    alternating = train_plan(datasets, RECIPE, batch_size=8, short_side=[40, 48], mixing="per_batch",
                             batch_policy="alternating", seed=3)
    assert [b[0].dataset for b in alternating[:5]] == [0, 1, 0, 1, 0]


def test_no_flip_for_no_flip_datasets():
    datasets = [make_dataset("flips", 50), make_dataset("ssv2", 50, flip=False)]
    samples = [s for b in train_plan(datasets, RECIPE, batch_size=10, short_side=[40, 48]) for s in b]
    assert not any(s.flip for s in samples if s.dataset == 1)
    assert 10 < sum(s.flip for s in samples if s.dataset == 0) < 40


@pytest.mark.parametrize("mixing", ["mixed", "per_batch"])
def test_two_shards_take_equal_steps_and_cover_the_epoch(mixing):
    datasets = [make_dataset("a", 37), make_dataset("b", 12)]  # 49 samples: uneven over 2 ranks x batch 4
    ranks = [train_plan(datasets, RECIPE, batch_size=4, short_side=[40, 48], mixing=mixing, seed=5,
                        shard_id=r, num_shards=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 7  # ceil(49 / 8)
    assert all(len(b) == 4 for plan in ranks for b in plan)
    valid = [s for plan in ranks for b in plan for s in b if s.valid]
    assert len(valid) == 49
    if mixing == "mixed":  # sizes as weights and the default epoch: each video exactly once
        assert sorted((s.dataset, s.video) for s in valid) == sorted(
            [(0, v) for v in range(37)] + [(1, v) for v in range(12)])


def test_plans_are_deterministic_per_seed_and_epoch():
    datasets = [make_dataset("a", 20), make_dataset("b", 9)]
    key = lambda plan: [(s.dataset, s.video, tuple(s.frames), s.short_side, s.crop_anchor, s.flip)  # noqa: E731
                        for b in plan for s in b]
    plan = lambda **kw: train_plan(datasets, RECIPE, batch_size=4, short_side=[40, 48], **kw)  # noqa: E731
    assert key(plan(seed=1, epoch=2)) == key(plan(seed=1, epoch=2))
    assert key(plan(seed=1, epoch=2)) != key(plan(seed=1, epoch=3))


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_eval_covers_each_video_once_with_all_views(num_shards):
    datasets = [make_dataset("a", 7, sampling="uniform"), make_dataset("b", 4)]
    ranks = [eval_plan(datasets, RECIPE, batch_size=5, short_side=48, temporal_views=2, spatial_views=3,
                       shard_id=r, num_shards=num_shards) for r in range(num_shards)]
    assert len({len(plan) for plan in ranks}) == 1
    assert all(len(b) == 5 for plan in ranks for b in plan)
    views = Counter((s.dataset, s.video) for plan in ranks for b in plan for s in b if s.valid)
    assert views == {(d, v): 6 for d, n in ((0, 7), (1, 4)) for v in range(n)}
    owners = {}
    for r, plan in enumerate(ranks):
        for s in (s for b in plan for s in b if s.valid):
            assert owners.setdefault((s.dataset, s.video), r) == r  # all views of a video on one rank
    anchors = sorted({s.crop_anchor for plan in ranks for b in plan for s in b})
    assert anchors == [(0.0, 0.5), (0.5, 0.5), (1.0, 0.5)]
