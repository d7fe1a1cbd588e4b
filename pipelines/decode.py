"""CPU decode strategies: decode exactly the frames a clip needs, from the key frame that precedes them.

On the CPU the loader decodes in a pool of worker threads (both libraries below decode and convert colours with
the GIL released) and hands the frames to the DALI graph through `external_source`; DALI then does the
augmentation, faster than DALI's own CPU decoders (`dalitrain bench pipeline`): `fn.readers.video` decodes in a
single thread, and `fn.decoders.video` decodes from frame 0 rather than seeking.

Each strategy is a function `(path, frames[T], windows, interpolation) -> [uint8 array [T, H, W, 3] per window]`:
one decode, one clip per window, frames in the requested order (repeats allowed). A window (`Window`, or
augment.ResizedCrop: anything with `.box(height, width)` and `.crop`) is applied by FFmpeg: it crops the box and
scales it to crop x crop before converting to RGB, so the DALI graph skips its resize and only the window's pixels
are converted (cheaper than converting whole frames and resizing in DALI: README, "Design choices, measured"); a
clip's repeated samples and an evaluation's spatial views share the decode. A window of None returns whole frames,
which the graph crops and resizes (the loader does that when the strategy lacks the resize's interpolation:
`WINDOW_INTERPOLATIONS`). The box is the same either way (`box` here, the graph's `roi`), which
tests/pipelines/test_loader.py checks end to end. `decode_pyav` and `decode_torchcodec` are the one-window forms.
A file that cannot be read or decoded raises `DecodeError` naming the file and the reason.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import av
import av.filter
import numpy as np
from av.video.reformatter import VideoReformatter


@dataclass(frozen=True)
class Window:
    """A clip's spatial augmentation: scale the short side to `short_side`, then take the `crop` x `crop` square
    at `anchor` (its position along the long and the short side, each in [0, 1])."""

    short_side: float
    anchor: tuple[float, float]
    crop: int

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, box height, box width) in source pixels: the crop before scaling."""
        side = self.crop * min(height, width) / self.short_side
        box_h, box_w = round(min(side, height)), round(min(side, width))
        along_long, along_short = self.anchor
        top = (along_long if height > width else along_short) * (height - box_h)
        left = (along_short if height > width else along_long) * (width - box_w)
        return round(top), round(left), box_h, box_w


Decoder = Callable[[str | Path, np.ndarray, Sequence[Optional[Window]], str], list[np.ndarray]]
# swscale's filters for the graph's interpolations: bicubic with C = 0.75 is Keys' kernel with a = -0.75, PyTorch's
SWSCALE_FLAGS = {"linear": "flags=bilinear", "cubic": "flags=bicubic:param0=0:param1=0.75"}


class DecodeError(RuntimeError):
    """One line: `<file>: <reason>`."""


def decode_pyav(path: str | Path, frames: np.ndarray, window: Optional[Window] = None,
                interpolation: str = "linear") -> np.ndarray:
    """One window's clip (None: whole frames); see decode_pyav_views."""
    return decode_pyav_views(path, frames, [window], interpolation)[0]


def decode_pyav_views(path: str | Path, frames: np.ndarray, windows: Sequence[Optional[Window]],
                      interpolation: str = "linear") -> list[np.ndarray]:
    """PyAV: one seek to the key frame before the first wanted frame, then decode forward to the last one.
    Frame i is the frame presented nearest to time i / fps (fps: the stream's average rate), so a
    variable-frame-rate file is sampled by time, not by frame count. Each kept frame is converted once per window
    (`_ToRGB`)."""
    wanted = set(np.unique(frames).tolist())
    converters = [_ToRGB(window, interpolation) for window in windows]

    def convert(frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
        return tuple(to_rgb(frame) for to_rgb in converters)

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # the loader decodes several clips at once, one per worker thread
            fps = stream.average_rate or stream.guessed_rate
            pts_per_frame = 1 / (fps * stream.time_base)
            origin = stream.start_time or 0
            got, landed = _decode_forward(container, stream, wanted, origin, pts_per_frame, min(wanted), convert)
            if landed > min(wanted) + 0.5 and min(wanted) > 0:  # the seek landed past it: decode from the start
                got, _ = _decode_forward(container, stream, wanted, origin, pts_per_frame, 0, convert)
    except (av.error.FFmpegError, IndexError, ZeroDivisionError, TypeError) as err:
        raise DecodeError(f"{path}: cannot decode ({type(err).__name__}: {err})") from None
    return [_gather(path, {index: views[view] for index, views in got.items()}, frames)
            for view in range(len(windows))]


class _ToRGB:
    """Frames -> RGB arrays: one scaler for the whole clip, single-threaded (PyAV's `to_ndarray(format=...)`
    builds a scaler per frame with a thread per core: 0.24 against 0.09 ms a 384x256 frame, measured). Without
    a window, frames keep their size (swscale's fast unscaled path). With one, an FFmpeg filter graph built on
    the first frame (when its size is known) crops the box (`exact`: odd offsets are kept, not rounded to the
    chroma grid) and scales it to crop x crop in YUV (swscale widens its filter when it shrinks, so it is
    antialiased like DALI's resize), then the unscaled path converts: scaling straight to RGB takes swscale's slow
    generic path (0.20 against 0.15 ms a frame, measured)."""

    def __init__(self, window: Optional[Window], interpolation: str):
        self.window, self.flags = window, SWSCALE_FLAGS[interpolation]
        self.graph, self.reformatter = None, VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.window is not None:
            if self.graph is None:
                self.graph = self._window_graph(frame)
            self.graph.push(frame)
            frame = self.graph.pull()
        return self.reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def _window_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        top, left, box_h, box_w = self.window.box(frame.height, frame.width)
        graph = av.filter.Graph()
        graph.threads = 1
        chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                  time_base=frame.time_base),
                 graph.add("crop", f"{box_w}:{box_h}:{left}:{top}:exact=1"),
                 graph.add("scale", f"{self.window.crop}:{self.window.crop}:{self.flags}"),
                 graph.add("buffersink")]
        for source, sink in zip(chain, chain[1:]):
            source.link_to(sink)
        graph.configure()
        return graph


def _decode_forward(container, stream, wanted: set[int], origin: int, pts_per_frame, first: int,
                    convert: Callable[[av.VideoFrame], tuple]) -> tuple[dict[int, tuple], float]:
    """Decode from the key frame before `first` until the last wanted index is passed; each wanted index gets
    the frame presented nearest its time (ties: the earlier frame, the one on screen then); past the video's
    end, its final frame. Returns the frames and the time (in frames) of the first one decoded."""
    container.seek(origin + int(first * pts_per_frame), backward=True, any_frame=False, stream=stream)
    targets = sorted(wanted)
    got: dict[int, tuple] = {}
    rgb: dict[int, tuple] = {}  # by presentation time: one conversion however many targets share a frame

    def take(target: int, frame) -> None:
        if frame.pts not in rgb:
            rgb[frame.pts] = convert(frame)
        got[target] = rgb[frame.pts]

    landed, previous, frame = None, None, None
    for frame in container.decode(stream):
        time = (frame.pts - origin) / pts_per_frame
        landed = time if landed is None else landed
        while targets and time >= targets[0]:
            target = targets.pop(0)
            closer_before = previous is not None and target - previous[0] <= time - target
            take(target, previous[1] if closer_before else frame)
        if not targets:
            break
        previous = (time, frame)
    else:  # the video ended before the last wanted frame: its final frame stands in for the rest
        for target in targets:
            if frame is not None:
                take(target, frame)
    return got, landed if landed is not None else 0.0


def decode_torchcodec_views(path: str | Path, frames: np.ndarray, windows: Sequence[Optional[Window]],
                            interpolation: str = "linear") -> list[np.ndarray]:
    """torchcodec applies its transforms per decoder: one decode per window."""
    if interpolation not in WINDOW_INTERPOLATIONS["torchcodec"] and any(w is not None for w in windows):
        raise ValueError(f"torchcodec scales with {WINDOW_INTERPOLATIONS['torchcodec']} only, not {interpolation}")
    return [decode_torchcodec(path, frames, window) for window in windows]


def decode_torchcodec(path: str | Path, frames: np.ndarray, window: Optional[Window] = None) -> np.ndarray:
    """torchcodec (needs the system FFmpeg libraries): `get_frames_at` seeks to key frames itself; with a window,
    FFmpeg crops and scales each frame as it converts it (bilinear, antialiased, as DALI's resize)."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    wanted = np.unique(frames)
    transforms = None if window is None else [_torchcodec_crop(window), Resize((window.crop, window.crop))]
    try:
        decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="approximate", num_ffmpeg_threads=1,
                               transforms=transforms)
        count = decoder.metadata.num_frames or int(wanted[-1]) + 1
        wanted = np.unique(np.minimum(wanted, count - 1))
        batch = decoder.get_frames_at(wanted.tolist()).data.numpy()
    except (RuntimeError, ValueError, IndexError) as err:
        raise DecodeError(f"{path}: cannot decode ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if np.array_equal(wanted, frames):  # the usual clip, distinct frames in order: no copy (4 MB at 16x256x340)
        return batch
    return _gather(path, dict(zip(wanted.tolist(), batch)), frames)


def _torchcodec_crop(window: Window):
    """torchcodec's decoder transform for the window's box. Its public crops are centred or random; a transform
    is a spec string built from the frame size (torchcodec 0.13's `DecoderTransform` interface, which its own
    `RandomCrop` uses: "crop, height, width, left, top")."""
    from torchcodec.transforms import DecoderTransform

    class Crop(DecoderTransform):
        def _make_transform_spec(self, input_dims: tuple[Optional[int], Optional[int]]) -> str:
            height, width = input_dims
            if height is None or width is None:
                raise ValueError("the video's frame size is not in its metadata")
            top, left, box_h, box_w = window.box(height, width)
            return f"crop, {box_h}, {box_w}, {left}, {top}"

        def _get_output_dims(self) -> None:
            return None  # asked before the frame size is known; the Resize that follows does not need it

    return Crop()


def torchcodec_window_problem() -> Optional[str]:
    """Why torchcodec cannot apply a window here, or None. `_torchcodec_crop` subclasses a private interface, so a
    torchcodec release that changes it must be caught before the first decode, not halfway through an epoch:
    the spec of a known window must come out as torchcodec 0.13 reads it."""
    try:
        from torchcodec.transforms import DecoderTransform

        spec = _torchcodec_crop(Window(short_side=48.0, anchor=(0.5, 0.5), crop=32))._make_transform_spec((48, 64))
        parameters = list(inspect.signature(DecoderTransform._make_transform_spec).parameters)
    except Exception as err:  # any change of the interface shows up here, whatever it raises
        return f"its DecoderTransform interface changed ({type(err).__name__}: {err})"
    if parameters != ["self", "input_dims"] or spec != "crop, 32, 32, 16, 8":
        return f"its DecoderTransform interface changed (_make_transform_spec{tuple(parameters)} -> {spec!r})"
    return None


def _gather(path: Path, got: dict[int, np.ndarray], frames: np.ndarray) -> np.ndarray:
    """Frames in the requested order. Frame counts can be off by one at the end, so a frame that was not there
    is replaced by the nearest decoded one; none at all is an error."""
    if not got:
        raise DecodeError(f"{path}: no frame decoded at indices {frames.min()}..{frames.max()}")
    decoded = np.array(sorted(got))
    nearest = decoded[np.abs(decoded[None, :] - frames[:, None]).argmin(axis=1)]
    return np.stack([got[int(i)] for i in nearest])


def torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401  (loads the FFmpeg libraries)
    except (ImportError, RuntimeError, OSError):
        return False
    return True


DECODERS: dict[str, Decoder] = {"pyav": decode_pyav_views, "torchcodec": decode_torchcodec_views}
# the interpolations each strategy scales a window with (torchcodec's Resize is bilinear only)
WINDOW_INTERPOLATIONS = {"pyav": ("linear", "cubic"), "torchcodec": ("linear",)}
SHARED_DECODE = frozenset({"pyav"})  # one decode converted through several windows (torchcodec: one per window)
