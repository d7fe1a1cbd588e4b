"""ROI-Align against hand-computed values (torchvision's roi_align semantics, aligned=True), and a per-point loop."""
import math

import pytest
import torch

from dalitrain.models.roi_align import roi_align


def ramp(height=4, width=4):
    """f(y, x) = 10 y + x + 1: bilinear interpolation is exact on it inside the map."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    return (10 * y + x + 1)[None, None]  # [1, 1, H, W]


def one(box, size=(1, 1), sampling_ratio=-1, features=None):
    features = ramp() if features is None else features
    return roi_align(features, torch.tensor([[0.0, *box]]), size, sampling_ratio=sampling_ratio)[0, 0]


def test_box_on_pixel_centres():
    # aligned: (0.5, 0.5, 1.5, 1.5) is pixel (0, 0) shifted to its centre: one sample at (0.5, 0.5) of the map
    assert one((0.5, 0.5, 1.5, 1.5), sampling_ratio=1).item() == pytest.approx(10 * 0.5 + 0.5 + 1)
    # (1, 1, 3, 3): samples at rows and columns 1 and 2 -> the mean of 12, 13, 22, 23
    assert one((1, 1, 3, 3), sampling_ratio=2).item() == pytest.approx((12 + 13 + 22 + 23) / 4)
    # the same box in 2 x 2 bins of one sample each: the four pixel values themselves
    torch.testing.assert_close(one((1, 1, 3, 3), size=(2, 2), sampling_ratio=1),
                               torch.tensor([[12.0, 13.0], [22.0, 23.0]]))


def test_box_crossing_the_border():
    # start -1.5: samples at -1 and 0 along each axis; -1 reads the border pixel (0): the mean is f(0, 0) = 1
    assert one((-1, -1, 1, 1), sampling_ratio=2).item() == pytest.approx(1.0)
    # wholly beyond one pixel outside: every sample is 0
    assert one((-3, -3, -1, -1), sampling_ratio=2).item() == 0.0
    # past the far side, adaptive grid ceil(3 / 1) = 3 samples at 2, 3, 4 per axis; 4 reads the last pixel (3)
    mean = (2 + 3 + 3) / 3
    assert one((2, 2, 5, 5)).item() == pytest.approx(10 * mean + mean + 1)


def test_empty_box_gives_zero():
    assert one((1, 1, 1, 3)).item() == 0.0  # zero width: the adaptive grid has no sample
    assert one((2, 2, 2, 2), size=(2, 2)).abs().sum().item() == 0.0


def reference(features, boxes, size, sampling_ratio):
    """torchvision's algorithm point by point (aligned=True), for random inputs."""
    _, C, H, W = features.shape
    out = torch.zeros(len(boxes), C, *size, dtype=torch.float64)

    def bilinear(channel, y, x):
        if y < -1.0 or y > H or x < -1.0 or x > W:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= H - 1:
            y_low = y_high = H - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= W - 1:
            x_low = x_high = W - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        return ((1 - ly) * (1 - lx) * channel[y_low, x_low] + (1 - ly) * lx * channel[y_low, x_high]
                + ly * (1 - lx) * channel[y_high, x_low] + ly * lx * channel[y_high, x_high])

    for k, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sy, sx = y1 - 0.5, x1 - 0.5
        bh, bw = (y2 - y1) / size[0], (x2 - x1) / size[1]
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(bh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(bw)
        for c in range(C):
            channel = features[int(b), c].double()
            for i in range(size[0]):
                for j in range(size[1]):
                    total = sum(bilinear(channel, sy + i * bh + (iy + 0.5) * bh / gh, sx + j * bw + (ix + 0.5) * bw / gw)
                                for iy in range(gh) for ix in range(gw))
                    out[k, c, i, j] = total / max(gh * gw, 1)
    return out


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_random_boxes_match_the_point_loop(sampling_ratio):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 7, 9, generator=generator)
    corners = torch.rand(11, 2, 2, generator=generator) * torch.tensor([11.0, 9.0]) - 1.0  # some cross the border
    x1y1, x2y2 = corners.min(dim=1).values, corners.max(dim=1).values
    boxes = torch.cat([torch.randint(0, 2, (11, 1), generator=generator).float(), x1y1, x2y2], dim=1)
    got = roi_align(features, boxes, (3, 2), sampling_ratio=sampling_ratio)
    torch.testing.assert_close(got.double(), reference(features, boxes, (3, 2), sampling_ratio), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_features_and_no_box_gives_an_empty_result():
    features = ramp().requires_grad_(True)
    roi_align(features, torch.tensor([[0.0, 1, 1, 3, 3]]), (1, 1), sampling_ratio=2).sum().backward()
    assert features.grad[0, 0, 1:3, 1:3].sum().item() == pytest.approx(1.0)  # the four sampled pixels, 1/4 each
    assert roi_align(ramp(), torch.zeros(0, 5), (2, 2)).shape == (0, 1, 2, 2)
