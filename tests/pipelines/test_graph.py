"""The one DALI graph: it builds for every device / decode combination (GPU variants skip without CUDA), and each
augmentation op does to the pixels what its definition (timm / PIL, torchvision, PySlowFast) says."""
import numpy as np
import pytest
import torch

from dalitrain.data.augment import RAND_OPS, SKIPPED, geometry, op_value, pointwise
from dalitrain.pipelines.graph import clip_pipeline

SIZE = 16
# mean 0 and std 1/255: the graph's output is the 0-255 pixel value itself
IDENTITY_NORM = dict(mean=[0.0] * 3, std=[1 / 255] * 3)


def build(device: str = "cpu", decode_in_graph: bool = False, **ops):
    pipe = clip_pipeline(batch_size=2, num_threads=1, device_id=0 if device == "gpu" else None, device=device,
                         decode_in_graph=decode_in_graph, training=True, crop_size=SIZE, prefetch_queue_depth=1,
                         **{**IDENTITY_NORM, **ops})
    pipe.build()
    return pipe


def run(pipe, clip: np.ndarray, **inputs) -> np.ndarray:
    """Both samples of the batch get `clip` and the same inputs; the first sample's output [C, T, H, W]."""
    pipe.feed_input("frames", [clip, clip])
    pipe.feed_input("roi", [np.array([0, 0, clip.shape[1], clip.shape[2]], np.float32)] * 2)
    pipe.feed_input("flip", [np.bool_(False)] * 2)
    for name, value in inputs.items():
        pipe.feed_input(name, [value, value])
    (out,) = pipe.run()
    return np.array(out.as_tensor())[0]


def ramp_clip(frames: int = 2) -> np.ndarray:
    """[T, 16, 16, 3] uint8 whose 256 pixels take every level 0..255 once, the same in every channel and frame."""
    levels = np.arange(256, dtype=np.uint8).reshape(SIZE, SIZE)
    return np.repeat(np.repeat(levels[None, :, :, None], 3, axis=3), frames, axis=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (NVDEC decode and GPU augmentation)"))])
@pytest.mark.parametrize("decode_in_graph", [False, True])
@pytest.mark.parametrize("ops", [{}, dict(color=True, rand_augment_layers=4, erase=True, interpolation="cubic")])
def test_same_graph_builds_on_each_device(device, decode_in_graph, ops):
    assert build(device, decode_in_graph, **ops).num_outputs == 1


def rand_augment_inputs(ops: np.ndarray, values: np.ndarray) -> dict:
    """What the loader feeds for a RandAugment draw on a 16 x 16 clip that needs no crop (its warp is the draw's
    geometry alone)."""
    moved = geometry(ops, values, SIZE)
    return dict(ra_ops=pointwise(ops), ra_values=values.astype(np.float32), warp=np.bool_(moved is not None),
                matrix=(np.eye(3) if moved is None else moved)[:2].astype(np.float32))


def op(name: str, value: float) -> dict:
    return rand_augment_inputs(np.array([RAND_OPS.index(name)], np.int32), np.array([value]))


@pytest.mark.parametrize("name, value, expected", [
    ("Invert", 0.0, lambda v: 255 - v),
    ("Posterize", 224.0, lambda v: v & 224),  # 3 bits kept
    ("Solarize", 128.0, lambda v: np.where(v < 128, v, 255 - v)),
    ("SolarizeAdd", 55.0, lambda v: np.where(v < 128, v + 55, v)),
    ("Brightness", 0.5, lambda v: v * 0.5),  # PIL: blend with black
    ("Contrast", 0.0, lambda v: np.full_like(v, 127.5 * 0.299 + 127.5 * 0.587 + 127.5 * 0.114)),  # the grey mean
    (None, 3.0, lambda v: v),  # a skipped slot leaves the clip as it was
])
def test_pointwise_rand_augment_ops_match_their_pil_definitions(name, value, expected):
    pipe = build(rand_augment_layers=1)
    clip = ramp_clip()
    inputs = rand_augment_inputs(np.array([SKIPPED], np.int32), np.array([value])) if name is None else op(name, value)
    out = run(pipe, clip, **inputs)
    want = expected(clip[..., 0].astype(np.int64)).astype(np.float64)  # [T, H, W]
    assert np.abs(out - want[None]).max() <= 1.0  # uint8 rounding


@pytest.mark.parametrize("name, value", [("Rotate", 30.0), ("ShearX", 0.3), ("ShearY", -0.3),
                                         ("TranslateXRel", 4.0), ("TranslateYRel", -4.0)])
def test_geometric_ops_move_the_picture_and_bring_in_the_fill(name, value):
    pipe = build(rand_augment_layers=1)
    clip = np.full((2, SIZE, SIZE, 3), 40, np.uint8)
    out = run(pipe, clip, **op(name, value))
    filled = np.isclose(out, 128, atol=1)
    assert filled.any() and np.isclose(out[:, :, SIZE // 2, SIZE // 2], 40, atol=1).all()
    if name.startswith("Translate"):  # 4 of 16 columns (rows) come from outside the frame
        assert filled.mean() == pytest.approx(0.25, abs=1 / SIZE)
    assert np.array_equal(out[:, 0], out[:, 1])  # both frames moved alike


def test_a_quarter_turn_moves_the_bottom_edge_to_the_right():
    # PIL's rotate(90) turns counter-clockwise: the output's right column shows the input's bottom row
    pipe = build(rand_augment_layers=1)
    clip = np.full((2, SIZE, SIZE, 3), 40, np.uint8)
    clip[:, -1] = 200  # the bottom row
    out = run(pipe, clip, **op("Rotate", 90.0))
    assert np.allclose(out[:, :, 1:-1, -1], 200, atol=1) and np.allclose(out[:, :, 1:-1, 1:-2], 40, atol=1)


def test_auto_contrast_and_equalize_stretch_a_dull_clip():
    pipe = build(rand_augment_layers=1)
    dull = (100 + ramp_clip() // 16).astype(np.uint8)  # levels 100..115
    for name in ("AutoContrast", "Equalize"):
        out = run(pipe, dull, **op(name, 0.0))
        assert out.min() <= 1 and out.max() >= 254, name


def test_one_draw_applies_to_every_frame_of_the_clip():
    pipe = build(rand_augment_layers=4)
    clip = ramp_clip(3) // 2 + np.arange(3, dtype=np.uint8)[:, None, None, None]  # frames differ by one level
    rng = np.random.default_rng(0)
    for _ in range(5):
        ops = rng.integers(0, len(RAND_OPS), 4).astype(np.int32)
        values = np.array([op_value(RAND_OPS[o], 5, False, SIZE, True) for o in ops])
        out = run(pipe, clip, **rand_augment_inputs(ops, values))
        # nearly identical frames stay nearly identical: every frame got the same ops with the same parameters
        # (where one op draws on another frame the ramp moves by 8 levels and more)
        assert np.abs(out[:, 1:] - out[:, :1]).mean() < 6, [RAND_OPS[o] for o in ops]


def test_colour_jitter_scales_brightness_and_removes_saturation():
    pipe = build(color=True)
    clip = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    clip[..., 0] = 100  # a red clip
    brighter = run(pipe, clip, color=np.array([1.5, 1.0, 1.0], np.float32))
    assert np.allclose(brighter[0], 150, atol=1) and np.allclose(brighter[1:], 0, atol=1)
    grey = run(pipe, clip, color=np.array([1.0, 1.0, 0.0], np.float32))
    assert np.allclose(grey[0], grey[1], atol=2) and np.allclose(grey[1], grey[2], atol=2)  # R = G = B


def test_erasing_fills_one_box_through_every_frame_and_nothing_else():
    pipe = build(erase=True)
    clip = np.full((3, SIZE, SIZE, 3), 40, np.uint8)
    fill = np.random.default_rng(0).standard_normal((3, 3, 4, 5)).astype(np.float32)  # [C, T, h, w]
    out = run(pipe, clip, erase_box=np.array([2, 3, 4, 5], np.int32), erase_fill=fill)
    assert np.array_equal(out[:, :, 2:6, 3:8], fill)  # the noise itself, frame by frame
    outside = np.ones(out.shape, bool)
    outside[:, :, 2:6, 3:8] = False
    assert np.all(out[outside] == 40)
    untouched = run(pipe, clip, erase_box=np.zeros(4, np.int32), erase_fill=np.zeros((3, 1, 1, 1), np.float32))
    assert np.all(untouched == 40)
