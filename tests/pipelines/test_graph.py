"""The one DALI graph builds for every device / decode combination; GPU variants skip without CUDA."""
import numpy as np
import pytest
import torch

from dalitrain.pipelines.graph import clip_pipeline


def build(device: str, decode_in_graph: bool, auto_augment=None):
    pipe = clip_pipeline(batch_size=2, num_threads=1, device_id=0 if device == "gpu" else None, device=device,
                         decode_in_graph=decode_in_graph, training=True, crop_size=16, mean=[0.5] * 3,
                         std=[0.25] * 3, auto_augment=auto_augment, prefetch_queue_depth=1)
    pipe.build()
    return pipe


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (NVDEC decode and GPU augmentation)"))])
@pytest.mark.parametrize("decode_in_graph", [False, True])
def test_same_graph_builds_on_each_device(device, decode_in_graph):
    pipe = build(device, decode_in_graph)
    assert pipe.num_outputs == 1


@pytest.mark.parametrize("policy", ["rand_augment", "trivial_augment"])
def test_auto_augment_applies_one_op_to_the_whole_clip(policy):
    pipe = build("cpu", False, policy)
    ramp = np.tile(np.linspace(0, 255, 24).astype(np.uint8)[None, None, :, None], (3, 20, 1, 3))  # [T,H,W,C]
    clip = ramp + np.arange(3, dtype=np.uint8)[:, None, None, None]  # frames differ by one level
    for _ in range(3):
        pipe.feed_input("frames", [clip, clip])
        pipe.feed_input("short_side", [np.float32(20)] * 2)
        pipe.feed_input("crop_anchor", [np.array([0.5, 0.5], np.float32)] * 2)
        pipe.feed_input("flip", [np.bool_(False)] * 2)
        (out,) = pipe.run()
        video = np.array(out.as_tensor())  # [B, C, T, H, W]
        # nearly identical frames stay nearly identical: every frame got the same augmentation
        assert np.abs(video[:, :, 1:] - video[:, :, :1]).mean() < 0.2
