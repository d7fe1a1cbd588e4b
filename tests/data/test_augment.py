"""The plan's augmentation draws (dalitrain/data/augment.py) against PySlowFast's and timm's definitions, and
repeated augmentation in the plan. Expected values are worked out from those definitions in the comments."""
import math

import numpy as np
import pytest

from dalitrain.config import AugmentConfig
from dalitrain.data.augment import (RAND_OPS, SKIPPED, RandAugmentSpec, draw_erase_box, draw_rand_augment,
                                    draw_resized_crop, erase_fill, geometry, op_value, pointwise)
from dalitrain.data.sampling import ClipRecipe, DatasetRecords, VideoRecord, train_plan

AREA, ASPECT = (0.08, 1.0), (0.75, 4 / 3)


@pytest.mark.parametrize("height, width", [(240, 320), (320, 240), (90, 400), (31, 47)])
def test_resized_crop_windows_stay_inside_the_frame_and_follow_the_ranges(height, width):
    rng = np.random.default_rng(0)
    shares, ratios = [], []
    for _ in range(2000):
        top, left, box_h, box_w = draw_resized_crop(rng, AREA, ASPECT, 224).box(height, width)
        assert 0 <= top and 0 <= left and 0 < box_h and 0 < box_w
        assert top + box_h <= height and left + box_w <= width
        shares.append(box_h * box_w / (height * width))
        ratios.append(box_w / box_h)
    shares, ratios = np.array(shares), np.array(ratios)
    # rounding to whole pixels moves a side by up to half a pixel
    slack = 1 / min(height, width)
    assert shares.min() >= AREA[0] * (1 - 2 * slack) - 1e-9 and shares.max() <= 1.0
    assert ratios.min() >= ASPECT[0] * (1 - 2 * slack) and ratios.max() <= ASPECT[1] * (1 + 2 * slack)


def test_resized_crop_draws_area_uniformly_and_aspect_log_uniformly_when_every_attempt_fits():
    # a 1000 x 1000 frame with areas up to 0.5: the widest box is sqrt(0.5 x 4/3) x 1000 = 816 pixels, so the first
    # attempt always fits, and the box's area share is U(0.08, 0.5), its log aspect U(log 0.75, log 4/3)
    rng = np.random.default_rng(1)
    boxes = [draw_resized_crop(rng, (0.08, 0.5), ASPECT, 224).box(1000, 1000) for _ in range(4000)]
    shares = np.array([h * w / 1e6 for _, _, h, w in boxes])
    log_ratios = np.log([w / h for _, _, h, w in boxes])
    assert abs(shares.mean() - 0.29) < 0.01  # (0.08 + 0.5) / 2
    assert abs(np.quantile(shares, 0.25) - (0.08 + 0.25 * 0.42)) < 0.015
    assert abs(log_ratios.mean() - (math.log(0.75) + math.log(4 / 3)) / 2) < 0.01  # 0: symmetric
    assert abs(np.quantile(log_ratios, 0.9) - (math.log(0.75) + 0.9 * (math.log(4 / 3) - math.log(0.75)))) < 0.02
    # positions: uniform over the free range, so the box centre's mean is the frame's centre
    centres = np.array([top + h / 2 for top, _, h, _ in boxes])
    assert abs(centres.mean() - 500) < 8


def test_resized_crop_falls_back_to_the_centred_box_of_the_nearest_aspect():
    # 100 x 400 (aspect 4) with areas >= 0.9: an attempt's height is at least sqrt(0.9 x 40,000 / (4/3)) = 164 > 100,
    # so none fits; the fallback takes the full height and width 100 x 4/3 = 133, centred: left (400 - 133) // 2
    crop = draw_resized_crop(np.random.default_rng(2), (0.9, 1.0), ASPECT, 224)
    assert crop.box(100, 400) == (0, 133, 100, 133)
    assert crop.box(400, 100) == (133, 0, 133, 100)  # aspect 1/4: width 100, height 100 / 0.75 = 133


def test_rand_augment_string_is_read_as_timm_reads_it():
    assert RandAugmentSpec.parse("rand-m7-n4-mstd0.5-inc1") == RandAugmentSpec(4, 7.0, 0.5, True)
    assert RandAugmentSpec.parse("rand-m9-n2") == RandAugmentSpec(2, 9.0, 0.0, False)
    assert RandAugmentSpec.parse("rand") == RandAugmentSpec(2, 10.0, 0.0, False)  # timm's defaults
    for bad in ("rand_augment", "rand-m7-x4", "rand-m11", "rand-n0", "augmix-m5"):
        with pytest.raises(ValueError):
            RandAugmentSpec.parse(bad)


@pytest.mark.parametrize("name, magnitude, negate, increasing, expected", [
    ("Rotate", 5, False, True, 15.0),  # 5 / 10 x 30 degrees
    ("Rotate", 10, True, True, -30.0),
    ("ShearX", 5, True, True, -0.15),  # 0.5 x 0.3
    ("TranslateXRel", 10, False, True, 100.8),  # 0.45 x 224 pixels
    ("Posterize", 2.5, False, True, 224.0),  # keeps 4 - int(0.25 x 4) = 3 bits: 0b11100000
    ("Posterize", 10, False, True, 0.0),  # keeps 0 bits: black, as PIL's posterize(img, 0)
    ("Posterize", 10, False, False, 240.0),  # plain Posterize keeps int(1.0 x 4) = 4 bits: 0b11110000
    ("Solarize", 5, False, True, 128.0),  # threshold 256 - int(128)
    ("Solarize", 2.5, False, False, 64.0),  # threshold int(0.25 x 256)
    ("SolarizeAdd", 5, False, True, 55.0),  # int(0.5 x 110)
    ("Brightness", 5, False, True, 1.45),  # 1 + 0.5 x 0.9
    ("Contrast", 5, True, True, 0.55),  # 1 - 0.5 x 0.9
    ("Color", 5, False, False, 1.0),  # 0.5 x 1.8 + 0.1
    ("Equalize", 7, False, True, 0.0),
])
def test_op_values_follow_timms_level_to_arg(name, magnitude, negate, increasing, expected):
    assert op_value(name, magnitude, negate, 224, increasing) == pytest.approx(expected)


def test_rand_augment_draws_ops_uniformly_applies_half_and_clips_the_magnitude():
    rng = np.random.default_rng(3)
    spec = RandAugmentSpec(4, 9.5, 1.0, True)
    draws = [draw_rand_augment(rng, spec, 224) for _ in range(3000)]
    ops = np.concatenate([o for o, _ in draws])
    values = np.concatenate([v for _, v in draws])
    assert abs((ops == SKIPPED).mean() - 0.5) < 0.02  # timm: each op applied with probability 0.5
    counts = np.bincount(ops[ops != SKIPPED], minlength=len(RAND_OPS))
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    # the magnitude N(9.5, 1) is clipped at 10: a rotation never exceeds 30 degrees, and reaches it often
    rotate = np.abs(values[ops == RAND_OPS.index("Rotate")])
    assert rotate.max() <= 30.0 + 1e-5 and (rotate > 29.99).mean() > 0.25  # P(N(9.5, 1) > 10) = 0.31


def test_geometric_ops_compose_into_one_inverse_map_in_drawn_order():
    ops = np.array([RAND_OPS.index(n) for n in ("TranslateXRel", "Invert", "ShearY", "Rotate")], np.int32)
    assert geometry(ops[1:2], np.zeros(1), 16) is None
    # translate by 3: read x + 3; then shear y by 0.5: read (x, y + 0.5 x): together (x + 3, y + 0.5 x)
    moved = geometry(ops[:3], np.array([3.0, 0.0, 0.5]), 16)
    assert np.allclose(moved @ [2.0, 1.0, 1.0], [5.0, 2.0, 1.0])
    # a quarter turn (counter-clockwise) about the centre (8, 8): the output's right middle (16, 8) reads the
    # input's bottom middle (8, 16); the centre stays
    turn = geometry(ops[3:], np.array([90.0]), 16)
    assert np.allclose(turn @ [16.0, 8.0, 1.0], [8.0, 16.0, 1.0]) and np.allclose(turn @ [8.0, 8.0, 1.0], [8, 8, 1])
    assert pointwise(ops).tolist() == [SKIPPED, RAND_OPS.index("Invert"), SKIPPED, SKIPPED]


def test_erase_boxes_follow_pyslowfasts_area_aspect_and_probability():
    rng = np.random.default_rng(4)
    boxes = [draw_erase_box(rng, 0.25, 224) for _ in range(4000)]
    erased = [b for b in boxes if b[2]]
    assert abs(len(erased) / len(boxes) - 0.25) < 0.02
    for top, left, h, w in erased:
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224 and h < 224 and w < 224
        assert 0.02 * 0.98 <= h * w / 224**2 <= 1 / 3 * 1.02
        assert 0.3 * 0.9 <= w / h <= 1 / 0.3 * 1.1


def test_erase_fill_modes():
    rng = np.random.default_rng(5)
    pixel = erase_fill((0, 0, 6, 5), 4, "pixel", rng)
    assert pixel.shape == (3, 4, 6, 5) and abs(pixel.std() - 1) < 0.3 and len(np.unique(pixel)) == pixel.size
    colour = erase_fill((0, 0, 6, 5), 4, "rand", rng)
    assert np.all(colour == colour[:, :, :1, :1])  # one value per channel and frame ...
    assert len(np.unique(colour[0, :, 0, 0])) == 4  # ... a new one each frame (PySlowFast's per-frame call)
    assert not erase_fill((0, 0, 6, 5), 4, "const", rng).any()


def records() -> list[DatasetRecords]:
    def videos(n):
        return [VideoRecord(f"v{i}", i % 2, i, 40) for i in range(n)]
    return [DatasetRecords("a", videos(7)), DatasetRecords("ssv2", videos(5), sampling="uniform", flip=False)]


RELEASED = AugmentConfig(crop="resized", rand_augment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.25)


def plan(**kwargs):
    args = dict(batch_size=4, short_side=[64, 80], seed=0, epoch=1, crop_size=32)
    return train_plan(records(), ClipRecipe(8, 2), **{**args, **kwargs})


def test_repeated_samples_share_their_clip_but_not_their_augmentation():
    batches = plan(augment=RELEASED, num_samples=2)
    samples = [s for b in batches for s in b]
    assert len(batches) == math.ceil(12 / 2) and all(len(b) == 4 for b in batches)
    for first, second in zip(samples[::2], samples[1::2]):
        assert (first.dataset, first.video, first.valid) == (second.dataset, second.video, second.valid)
        assert np.array_equal(first.frames, second.frames)
        assert not np.array_equal(first.augment.resized_crop.attempts, second.augment.resized_crop.attempts)
        assert not np.array_equal(first.augment.values, second.augment.values)
    # every video of the epoch once (12 videos, 6 steps of 2 clips), each as two samples
    visits = [(s.dataset, s.video) for s in samples[::2]]
    assert sorted(visits) == sorted({(d, v) for d, n in ((0, 7), (1, 5)) for v in range(n)})
    assert not any(s.flip for s in samples if s.dataset == 1)  # SSv2 is never flipped


def test_repeated_augmentation_keeps_shards_equal_and_clips_on_one_rank():
    ranks = [plan(augment=RELEASED, num_samples=2, shard_id=r, num_shards=3) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1  # the same number of steps on every rank
    for rank in ranks:
        for batch in rank:
            assert len(batch) == 4
            assert [(s.dataset, s.video) for s in batch[::2]] == [(s.dataset, s.video) for s in batch[1::2]]
    clips = [(s.dataset, s.video) for r in ranks for b in r for s in b[::2] if s.valid]
    assert len(clips) == 12 and len(set(clips)) == 12


def test_augmentation_draws_leave_the_rest_of_the_plan_as_it_was():
    plain, augmented = plan(), plan(augment=RELEASED)
    key = lambda s: (s.dataset, s.video, tuple(s.frames), s.short_side, s.crop_anchor, s.flip)  # noqa: E731
    assert [key(s) for b in plain for s in b] == [key(s) for b in augmented for s in b]
    assert all(s.augment is None for b in plain for s in b)
    assert all(s.augment.ops.shape == (4,) for b in augmented for s in b)
