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
import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # FFmpeg's codec name: vp8, vp9, mjpeg, h264, hevc, ...
    width: int
    height: int
    frames: int  # what the container records, else the packets counted
    fps: float
    duration: float  # seconds
    packets: Optional[int] = None  # non-empty video packets demuxed; None when the file was not read through
    end_time: Optional[float] = None  # seconds from the stream's start to the end of its last packet (ditto)
    container: str = ""  # FFmpeg's demuxer name: "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "avi", ...
    pix_fmt: str = ""  # FFmpeg's pixel format: yuv420p, yuv422p10le, ... (chroma subsampling and bit depth)
    vfr: bool = False  # variable frame rate: the packets' presentation times are unevenly spaced (read through only)


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


def _read_packets(container, stream, fps: float) -> tuple[int, float, bool]:
    """Non-empty packets of `stream`, the time in seconds from its start to the end of the last of them, and
    whether the frame rate varies: two frames closer than 3/4 of the nominal frame time (1 / `fps`). A constant
    rate with frames missing has longer steps only, which the scan reports as missing frames instead."""
    count, end, starts = 0, 0.0, []
    for packet in container.demux(stream):
        if not packet.size:
            continue
        count += 1
        start = packet.pts if packet.pts is not None else packet.dts
        if start is not None:
            starts.append(start)
            end = max(end, float((start + (packet.duration or 0)) * packet.time_base))
    offset = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    steps = np.diff(np.sort(np.asarray(starts, dtype=np.float64))) * float(stream.time_base)  # seconds, in order
    steps = steps[steps > 0]  # a repeated timestamp is a muxing quirk, not a rate
    vfr = bool(fps) and len(steps) > 0 and float(steps.min()) < 0.75 / fps
    return count, end - offset, vfr


def probe_video(path: str | Path, count_packets: bool = False) -> VideoInfo:
    """Metadata of the first video stream. Raises av.error.FFmpegError (or ValueError without a video stream).

    The frame count comes from the container when it records one and otherwise from counting packets (WebM
    does not store it), which reads the file but decodes nothing. `count_packets` always reads them, so that
    the caller can compare what the container claims (frames, duration) with what the file holds (packets,
    end_time).
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        packets = end_time = None
        vfr = False
        if count_packets or not stream.frames:
            packets, end_time, vfr = _read_packets(container, stream, fps)
        frames = stream.frames or packets
        # the codec's name, not its decoder's: FFmpeg decodes AV1 with libdav1d, which is what `.name` says
        context = stream.codec_context
        return VideoInfo(context.codec.canonical_name, context.width, context.height, frames, fps,
                         _duration(container, stream, frames, fps), packets, end_time, container.format.name,
                         context.pix_fmt or "", vfr)
