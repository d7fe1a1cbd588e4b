"""Read a video's container metadata with PyAV: codec, size, frame count, frame rate.

Shared by `dalitrain scan` (which adds the checks and reasons) and the pipelines (which need frame counts to
pick clip indices).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # FFmpeg's codec name: vp8, vp9, mjpeg, h264, hevc, ...
    width: int
    height: int
    frames: int
    fps: float
    duration: float  # seconds


def probe_video(path: str | Path) -> VideoInfo:
    """Metadata of the first video stream. Raises av.error.FFmpegError (or ValueError without a video stream).

    The frame count comes from the container when it records one and otherwise from counting packets (WebM
    does not store it), which reads the file but decodes nothing.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = stream.frames
        if not frames:
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = frames / fps if fps else 0.0
        return VideoInfo(stream.codec_context.name, stream.codec_context.width, stream.codec_context.height,
                         frames, fps, duration)
