"""Read a video's container metadata with PyAV: codec, size, frame count, frame rate.

Shared by `dalitrain scan` (which adds the checks and reasons) and the pipelines (which need frame counts to
pick clip indices).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import av


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # FFmpeg's codec name: vp8, vp9, mjpeg, h264, hevc, ...
    width: int
    height: int
    frames: int  # what the container records, else the packets counted
    fps: float
    duration: float  # seconds
    packets: Optional[int] = None  # non-empty video packets demuxed; None when the file was not read through


_MATROSKA_DURATION = re.compile(r"^(\d+):(\d+):(\d+(?:\.\d*)?)$")


def _duration(container, stream, frames: int, fps: float) -> float:
    """Seconds the container says the video lasts, independently of the packets actually present (so that a
    truncated file shows a shortfall): the stream's duration, Matroska's per-track DURATION tag (WebM keeps no
    stream duration), the container's duration when the video is its only stream, else frames / fps."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = _MATROSKA_DURATION.match(stream.metadata.get("DURATION", ""))
    if tag:
        hours, minutes, seconds = tag.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return frames / fps if fps else 0.0


def probe_video(path: str | Path, count_packets: bool = False) -> VideoInfo:
    """Metadata of the first video stream. Raises av.error.FFmpegError (or ValueError without a video stream).

    The frame count comes from the container when it records one and otherwise from counting packets (WebM
    does not store it), which reads the file but decodes nothing. `count_packets` always counts them, so that
    the caller can compare what the container claims with what the file holds.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        packets = None
        if count_packets or not stream.frames:
            packets = sum(1 for packet in container.demux(stream) if packet.size)
        frames = stream.frames or packets
        return VideoInfo(stream.codec_context.name, stream.codec_context.width, stream.codec_context.height,
                         frames, fps, _duration(container, stream, frames, fps), packets)
