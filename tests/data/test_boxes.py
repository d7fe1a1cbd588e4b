"""Boxes follow the clip's crop and flip exactly; jitter is bounded and replayable; boxes that leave are dropped."""
import numpy as np
import pytest

from dalitrain.data.boxes import boxes_in_clip
from dalitrain.pipelines.decode import Window


def test_crop_and_flip_by_hand():
    # a 100 x 200 frame (H x W); the crop window: top 20, left 50, 60 x 60 pixels
    boxes = np.array([[0.3, 0.3, 0.45, 0.8]])  # x 60..90, y 30..80 in pixels
    out, kept = boxes_in_clip(boxes, (100, 200), (20, 50, 60, 60), flip=False)
    np.testing.assert_allclose(out, [[10 / 60, 10 / 60, 40 / 60, 60 / 60]])
    flipped, _ = boxes_in_clip(boxes, (100, 200), (20, 50, 60, 60), flip=True)
    np.testing.assert_allclose(flipped, [[1 - 40 / 60, 10 / 60, 1 - 10 / 60, 60 / 60]])
    assert kept.tolist() == [True]


def test_the_window_of_the_plan_gives_the_same_pixels_as_the_graph():
    window = Window(short_side=80.0, anchor=(1.0, 0.0), crop=64)  # long side anchored at its end
    top, left, box_h, box_w = window.box(120, 160)  # 96 x 96 source pixels at left 64, top 0
    assert (top, left, box_h, box_w) == (0, 64, 96, 96)
    out, _ = boxes_in_clip(np.array([[0.4, 0.0, 1.0, 0.8]]), (120, 160), (top, left, box_h, box_w), flip=False)
    np.testing.assert_allclose(out, [[0.0, 0.0, 1.0, 1.0]])  # x 64..160 and y 0..96 pixels: the whole crop


def test_boxes_leaving_the_crop_are_clipped_or_dropped():
    boxes = np.array([[0.0, 0.0, 0.5, 0.5],  # half inside the window below: clipped
                      [0.9, 0.9, 1.0, 1.0],  # wholly outside: dropped
                      [0.2, 0.2, 0.3, 0.3]])  # wholly inside
    out, kept = boxes_in_clip(boxes, (100, 100), (25, 25, 50, 50), flip=False)
    assert kept.tolist() == [True, False, True]
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.1, 0.1]])
    sliver, kept = boxes_in_clip(np.array([[0.0, 0.0, 0.3, 0.3]]), (100, 100), (25, 25, 50, 50), flip=False)
    assert kept.tolist() == [False]  # 5 x 5 of its 30 x 30 inside: under a quarter


def test_jitter_is_bounded_and_replays_with_the_seed():
    boxes = np.tile([[0.2, 0.2, 0.6, 0.8]], (200, 1))
    first, _ = boxes_in_clip(boxes, (100, 100), (0, 0, 100, 100), flip=False, jitter=0.15,
                             rng=np.random.default_rng(7))
    again, _ = boxes_in_clip(boxes, (100, 100), (0, 0, 100, 100), flip=False, jitter=0.15,
                             rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    moved = np.abs(first - boxes)
    assert moved[:, [0, 2]].max() <= 0.15 * 0.4 + 1e-12 and moved[:, [1, 3]].max() <= 0.15 * 0.6 + 1e-12
    assert moved.mean() > 0.01  # it does move
    with pytest.raises(ValueError, match="random generator"):
        boxes_in_clip(boxes, (100, 100), (0, 0, 100, 100), flip=False, jitter=0.15)


def test_a_batch_carries_boxes_with_their_clip_index_and_labels():
    from dalitrain.data.boxes import batch_boxes
    clip0 = (np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.3, 0.3]]), np.array([[1, 0, 0], [0, 1, 1]]))
    clip1 = (np.zeros((0, 4)), np.zeros((0, 3)))  # every box left the crop
    clip2 = (np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[0, 0, 1]]))
    boxes, labels = batch_boxes([clip0, clip1, clip2])
    np.testing.assert_allclose(boxes, [[0, 0.1, 0.1, 0.5, 0.5], [0, 0.2, 0.2, 0.3, 0.3], [2, 0, 0, 1, 1]])
    np.testing.assert_array_equal(labels, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    assert boxes.dtype == labels.dtype == np.float32
