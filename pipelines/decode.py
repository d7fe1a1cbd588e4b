"""CPU decode strategies: decode exactly the frames a clip needs, from the key frame that precedes them.

On the CPU the loader decodes in a pool of worker threads (both libraries below decode and convert colours with
the GIL released) and hands the frames to the DALI graph through `external_source`; DALI then does the
augmentation. This beat DALI's own CPU decoders on the machines we measured (see benchmarks/bench_pipeline.py):
`fn.readers.video` decodes in a single thread, and `fn.decoders.video` decodes from frame 0 rather than seeking.

Each strategy is a function `(path, frames[T]) -> uint8 array [T, H, W, 3]`, frames in the requested order
(repeats allowed). A file that cannot be read or decoded raises `DecodeError` naming the file and the reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import av
import numpy as np

Decoder = Callable[[Path, np.ndarray], np.ndarray]


class DecodeError(RuntimeError):
    """One line: `<file>: <reason>`."""


def decode_pyav(path: Path, frames: np.ndarray) -> np.ndarray:
    """PyAV: one seek to the key frame before the first wanted frame, then decode forward to the last one."""
    wanted = set(np.unique(frames).tolist())
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate
            pts_per_frame = 1 / (fps * stream.time_base)
            origin = stream.start_time or 0
            got = _decode_forward(container, stream, wanted, origin, pts_per_frame, min(wanted))
            if min(wanted) not in got and min(wanted) > 0:  # the seek landed past it: decode from the start
                got = _decode_forward(container, stream, wanted, origin, pts_per_frame, 0)
    except (av.error.FFmpegError, IndexError, ZeroDivisionError, TypeError) as err:
        raise DecodeError(f"{path}: cannot decode ({type(err).__name__}: {err})") from None
    return _gather(path, got, frames)


def _decode_forward(container, stream, wanted: set[int], origin: int, pts_per_frame, first: int) -> dict:
    container.seek(origin + int(first * pts_per_frame), backward=True, any_frame=False, stream=stream)
    got: dict[int, np.ndarray] = {}
    last = max(wanted)
    frame = index = None
    for frame in container.decode(stream):
        index = int(round((frame.pts - origin) / pts_per_frame))
        if index in wanted:
            got[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            break
    else:  # the video ended before the last wanted frame: keep its final frame to stand in for the rest
        if frame is not None and index not in got:
            got[index] = frame.to_ndarray(format="rgb24")
    return got


def decode_torchcodec(path: Path, frames: np.ndarray) -> np.ndarray:
    """torchcodec (needs the system FFmpeg libraries): `get_frames_at` seeks to key frames itself."""
    from torchcodec.decoders import VideoDecoder

    wanted = np.unique(frames)
    try:
        decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="approximate", num_ffmpeg_threads=1)
        count = decoder.metadata.num_frames or int(wanted[-1]) + 1
        wanted = np.unique(np.minimum(wanted, count - 1))
        batch = decoder.get_frames_at(wanted.tolist()).data.numpy()
    except (RuntimeError, ValueError, IndexError) as err:
        raise DecodeError(f"{path}: cannot decode ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    return _gather(path, dict(zip(wanted.tolist(), batch)), frames)


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


DECODERS: dict[str, Decoder] = {"pyav": decode_pyav, "torchcodec": decode_torchcodec}
