"""CPU decode strategies return exactly the requested frames, in order, and fail in one line."""
import abc
import sys
import types

import numpy as np
import pytest
import torch

from dalitrain.data.augment import ResizedCrop
from dalitrain.pipelines.decode import (DecodeError, Window, decode_pyav, decode_pyav_views, decode_torchcodec,
                                        torchcodec_available, torchcodec_window_problem)
from tests.data.coded import coded_frames, frame_index, write_vfr_vp9, write_vp9

ONE_WINDOW = {"pyav": decode_pyav, "torchcodec": decode_torchcodec}
STRATEGIES = ["pyav"] + (["torchcodec"] if torchcodec_available() else [])


@pytest.mark.parametrize("name", STRATEGIES)
def test_requested_frames_in_requested_order(coded_video, name):
    wanted = np.array([12, 3, 3, 29, 0, 25])  # unsorted, repeated, across key frames (every 10)
    clip = ONE_WINDOW[name](coded_video, wanted)
    assert clip.shape == (6, 48, 64, 3) and clip.dtype == np.uint8
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == wanted.tolist()


@pytest.mark.parametrize("name", STRATEGIES)
def test_frames_past_the_end_repeat_the_last(coded_video, name):
    clip = ONE_WINDOW[name](coded_video, np.array([28, 30, 31]))  # off-by-one frame counts happen
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == [28, 29, 29]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_broken_file_is_one_line_naming_it(tmp_path, name):
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 garbage")
    with pytest.raises(DecodeError) as err:
        ONE_WINDOW[name](broken, np.array([0, 1]))
    assert str(err.value).startswith(f"{broken}: cannot decode") and "\n" not in str(err.value)


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec cannot load here")
def test_a_window_on_a_video_without_a_frame_size_is_refused_in_one_line():
    from dalitrain.pipelines.decode import Window, _torchcodec_crop

    crop = _torchcodec_crop(Window(short_side=48.0, anchor=(0.5, 0.5), crop=32))
    assert crop._make_transform_spec((48, 64)) == "crop, 32, 32, 16, 8"
    with pytest.raises(ValueError, match="^the video's frame size is not in its metadata$"):
        crop._make_transform_spec((None, 64))


def _fake_torchcodec(monkeypatch, make_transform_spec) -> None:
    """A torchcodec whose DecoderTransform declares `make_transform_spec` (a release that changed the interface)."""
    transforms = types.ModuleType("torchcodec.transforms")

    class DecoderTransform(abc.ABC):
        _make_transform_spec = abc.abstractmethod(make_transform_spec)

    transforms.DecoderTransform = DecoderTransform
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.transforms", transforms)


def test_a_torchcodec_whose_crop_interface_changed_is_detected(monkeypatch):
    _fake_torchcodec(monkeypatch, lambda self, input_dims: "")  # 0.13's signature
    assert torchcodec_window_problem() is None
    _fake_torchcodec(monkeypatch, lambda self: "")  # the spec no longer gets the frame size
    assert torchcodec_window_problem() == "its DecoderTransform interface changed (_make_transform_spec('self',) " \
                                          "-> 'crop, 32, 32, 16, 8')"
    _fake_torchcodec(monkeypatch, lambda self, input_dims, device: "")  # a new abstract argument
    assert "interface changed" in torchcodec_window_problem()


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec cannot load here")
def test_the_installed_torchcodec_takes_the_crop_as_written():
    assert torchcodec_window_problem() is None


def _ramps_video(tmp_path):
    """12 frames with ramps along both axes, 64x48."""
    y, x = np.mgrid[0:48, 0:64]
    picture = np.repeat((30 + 2 * x + 2 * y).astype(np.uint8)[None, :, :, None], 3, axis=-1)
    return write_vp9(tmp_path / "ramps.webm", np.repeat(picture, 12, axis=0))


@pytest.mark.parametrize("window", [Window(48.0, (0.5, 0.5), 32), Window(30.0, (1.0, 0.0), 16),
                                    ResizedCrop(np.array([[0.3, 0.7, 0.2, 0.9]]), (0.75, 1.33), 24)])
def test_pyav_crops_and_scales_the_windows_box(tmp_path, window):
    """The window's box of each frame, scaled to crop x crop in FFmpeg, against the whole frame cropped and
    resized in torch (bilinear, antialiased): the same pixels up to the two scalers."""
    video, frames = _ramps_video(tmp_path), np.array([3, 9])
    whole = decode_pyav(video, frames)
    top, left, box_h, box_w = window.box(*whole.shape[1:3])
    box = torch.from_numpy(whole[:, top:top + box_h, left:left + box_w]).permute(0, 3, 1, 2).float()
    expected = torch.nn.functional.interpolate(box, size=(window.crop, window.crop), mode="bilinear",
                                               antialias=True).permute(0, 2, 3, 1).numpy()
    got = decode_pyav(video, frames, window)
    assert got.shape == (2, window.crop, window.crop, 3)
    # a box one pixel off moves these ramps by 2 levels everywhere; the scalers differ by less at the borders
    assert np.abs(got - expected).mean() < 1.5


def test_one_decode_through_several_windows_equals_one_decode_per_window(tmp_path):
    video, frames = _ramps_video(tmp_path), np.array([9, 2, 2, 5])
    windows = [Window(48.0, (0.5, 0.5), 32), None, Window(30.0, (1.0, 0.0), 16)]
    views = decode_pyav_views(video, frames, windows, "cubic")
    assert [v.shape for v in views] == [(4, 32, 32, 3), (4, 48, 64, 3), (4, 16, 16, 3)]
    for view, window in zip(views, windows):
        assert np.array_equal(view, decode_pyav(video, frames, window, "cubic"))


def test_the_windows_interpolation_is_the_one_asked_for(tmp_path):
    """On a checkerboard, bilinear and bicubic (Keys, a = -0.75, PyTorch's) differ: FFmpeg's scale with each
    is closer to PyTorch's same kernel than to the other."""
    y, x = np.mgrid[0:48, 0:64]
    board = np.where((y // 3 + x // 3) % 2, 200, 50).astype(np.uint8)
    video = write_vp9(tmp_path / "board.webm", np.repeat(np.repeat(board[None, :, :, None], 3, -1), 4, 0))
    window = Window(60.0, (0.5, 0.5), 40)  # a 32 x 32 box scaled up to 40 x 40
    whole = decode_pyav(video, np.array([1]))
    top, left, box_h, box_w = window.box(48, 64)
    box = torch.from_numpy(whole[:, top:top + box_h, left:left + box_w]).permute(0, 3, 1, 2).float()
    torch_scaled = {mode: torch.nn.functional.interpolate(box, size=(40, 40), mode=mode, align_corners=False)
                    .permute(0, 2, 3, 1).numpy() for mode in ("bilinear", "bicubic")}
    for ours, theirs, other in (("linear", "bilinear", "bicubic"), ("cubic", "bicubic", "bilinear")):
        got = decode_pyav(video, np.array([1]), window, ours).astype(np.float64)
        assert np.abs(got - torch_scaled[theirs]).mean() < np.abs(got - torch_scaled[other]).mean(), ours


def test_a_variable_frame_rate_file_is_sampled_by_time(tmp_path):
    """Frame i is the one presented nearest to i / fps (here 40 ms apart), not the i-th frame in the file."""
    times = [0, 40, 80, 200, 240, 260, 280, 300, 420, 460, 500, 520, 640, 680, 700, 720]  # ms
    video = write_vfr_vp9(tmp_path / "vfr.webm", coded_frames(len(times)), times)
    wanted = np.arange(19)  # 0 .. 720 ms
    clip = decode_pyav(video, wanted)
    # nearest by time; a tie (360 ms: 300 or 420) goes to the earlier frame, the one on screen then
    expected = [int(np.argmin([abs(t - 40 * i) + (1e-6 * t) for t in times])) for i in wanted]
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == expected
    assert expected[:9] == [0, 1, 2, 2, 3, 3, 4, 6, 7]  # by count it would be 0 .. 8
    late = decode_pyav(video, np.array([11, 17]))  # a seek into the middle: still by time
    assert frame_index(late.mean(axis=(1, 2, 3))).tolist() == [expected[11], expected[17]]
