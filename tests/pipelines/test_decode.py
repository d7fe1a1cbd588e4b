"""CPU decode strategies return exactly the requested frames, in order, and fail in one line."""
import numpy as np
import pytest

from dalitrain.pipelines.decode import DECODERS, DecodeError, torchcodec_available
from tests.data.coded import coded_frames, frame_index, write_vfr_vp9

STRATEGIES = ["pyav"] + (["torchcodec"] if torchcodec_available() else [])


@pytest.mark.parametrize("name", STRATEGIES)
def test_requested_frames_in_requested_order(coded_video, name):
    wanted = np.array([12, 3, 3, 29, 0, 25])  # unsorted, repeated, across key frames (every 10)
    clip = DECODERS[name](coded_video, wanted)
    assert clip.shape == (6, 48, 64, 3) and clip.dtype == np.uint8
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == wanted.tolist()


@pytest.mark.parametrize("name", STRATEGIES)
def test_frames_past_the_end_repeat_the_last(coded_video, name):
    clip = DECODERS[name](coded_video, np.array([28, 30, 31]))  # off-by-one frame counts happen
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == [28, 29, 29]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_broken_file_is_one_line_naming_it(tmp_path, name):
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 garbage")
    with pytest.raises(DecodeError) as err:
        DECODERS[name](broken, np.array([0, 1]))
    assert str(err.value).startswith(f"{broken}: cannot decode") and "\n" not in str(err.value)


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec cannot load here")
def test_a_window_on_a_video_without_a_frame_size_is_refused_in_one_line():
    from dalitrain.pipelines.decode import Window, _torchcodec_crop

    crop = _torchcodec_crop(Window(short_side=48.0, anchor=(0.5, 0.5), crop=32))
    assert crop._make_transform_spec((48, 64)) == "crop, 32, 32, 16, 8"
    with pytest.raises(ValueError, match="^the video's frame size is not in its metadata$"):
        crop._make_transform_spec((None, 64))


def test_a_variable_frame_rate_file_is_sampled_by_time(tmp_path):
    """Frame i is the one presented nearest to i / fps (here 40 ms apart), not the i-th frame in the file."""
    times = [0, 40, 80, 200, 240, 260, 280, 300, 420, 460, 500, 520, 640, 680, 700, 720]  # ms
    video = write_vfr_vp9(tmp_path / "vfr.webm", coded_frames(len(times)), times)
    wanted = np.arange(19)  # 0 .. 720 ms
    clip = DECODERS["pyav"](video, wanted)
    # nearest by time; a tie (360 ms: 300 or 420) goes to the earlier frame, the one on screen then
    expected = [int(np.argmin([abs(t - 40 * i) + (1e-6 * t) for t in times])) for i in wanted]
    assert frame_index(clip.mean(axis=(1, 2, 3))).tolist() == expected
    assert expected[:9] == [0, 1, 2, 2, 3, 3, 4, 6, 7]  # by count it would be 0 .. 8
    late = DECODERS["pyav"](video, np.array([11, 17]))  # a seek into the middle: still by time
    assert frame_index(late.mean(axis=(1, 2, 3))).tolist() == [expected[11], expected[17]]
