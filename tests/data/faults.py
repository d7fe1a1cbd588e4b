"""Tiny test videos and a fault corpus for `dalitrain scan`: one file per quarantine reason beside good VP9,
VP8 and MJPEG files, all made with PyAV (no ffmpeg binary needed).

To hand the corpus to someone else's scanner (or to try `dalitrain scan` on it):

    python -m tests.data.faults DIR    # writes DIR/manifest.txt and DIR/expected.json ({path: reason or null})
    dalitrain scan DIR/manifest.txt --decoder dali --deep --num-classes 4 --min-frames 16 --out DIR/index.json
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import av
import numpy as np

NUM_CLASSES = 4
MIN_FRAMES = 16
FRAMES = 20  # every video but the short one; more than MIN_FRAMES

_PIX_FMT = {"mjpeg": "yuvj420p"}  # FFmpeg's MJPEG encoder wants full-range YUV


def write_video(path: str | Path, encoder: str = "libvpx-vp9", frames: int = FRAMES, width: int = 32,
                height: int = 32, fps: int = 10, drop_packets: range = range(0)) -> Path:
    """A small video of a bright bar moving down over noise, so that every frame differs (no skipped frames).
    `drop_packets` leaves those encoded packets out: a stream with a gap that still reaches its end."""
    path = Path(path)
    rng = np.random.default_rng(len(path.name))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = _PIX_FMT.get(encoder, "yuv420p")
        packets = []
        for i in range(frames):
            image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            image[(2 * i) % height] = 255
            packets += stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
        packets += stream.encode()
        container.mux([packet for i, packet in enumerate(packets) if i not in drop_packets])
    return path


def write_audio_only(path: str | Path) -> Path:
    """A valid WebM holding one Opus audio stream and no video."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 9600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_still_image(path: str | Path) -> Path:
    """A JPEG picture (under whatever name `path` has): FFmpeg opens it as a one-frame MJPEG stream."""
    path = Path(path)
    with av.open(str(path), "w", format="image2pipe") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return path


def truncate(path: str | Path, keep: float = 0.6) -> Path:
    """Cut the end off a file, as an interrupted download or copy does."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_mid_stream(path: str | Path) -> Path:
    """Zero the payload of the middle video packet. The container and every packet header stay intact, so
    opening and demuxing succeed (a shallow probe sees nothing); decoding fails at that frame."""
    path = Path(path)
    with av.open(str(path)) as container:
        packets = [(p.pos, bytes(p)) for p in container.demux(container.streams.video[0]) if p.size]
    pos, payload = packets[len(packets) // 2]
    data = bytearray(path.read_bytes())
    start = data.find(payload, pos)  # the demuxer's pos may point at the block header before the payload
    assert start >= 0, f"{path}: packet payload not found"
    data[start:start + len(payload)] = bytes(len(payload))
    path.write_bytes(bytes(data))
    return path


@dataclass(frozen=True)
class FaultCorpus:
    manifest: Path
    expected: dict[str, Optional[str]]  # manifest path -> reason of a deep CPU scan (None: ok)
    num_classes: int = NUM_CLASSES
    min_frames: int = MIN_FRAMES


def write_fault_corpus(directory: str | Path) -> FaultCorpus:
    """Write the corpus and its `path label` manifest into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_video(d / "good_vp9.webm", "libvpx-vp9")
    write_video(d / "good_vp8.webm", "libvpx")
    write_video(d / "good_mjpeg.mkv", "mjpeg")
    (d / "empty.webm").write_bytes(b"")
    (d / "folder.webm").mkdir(exist_ok=True)  # a manifest line that names a directory
    (d / "text.webm").write_text("this is a text file, not a video\n" * 20)
    write_still_image(d / "picture.webm")
    write_audio_only(d / "audio_only.webm")
    truncate(write_video(d / "truncated.webm"))
    corrupt_mid_stream(write_video(d / "corrupt.webm"))
    write_video(d / "gap.webm", drop_packets=range(FRAMES // 2, FRAMES // 2 + 3))
    write_video(d / "h264.mp4", "libx264")
    write_video(d / "short.webm", frames=MIN_FRAMES // 2)
    write_video(d / "label.webm")
    # (path, label, reason)
    rows = [
        ("good_vp9.webm", 0, None),
        ("good_vp8.webm", 1, None),
        ("good_mjpeg.mkv", NUM_CLASSES - 1, None),
        ("missing.webm", 0, "missing"),
        ("empty.webm", 0, "empty"),
        ("folder.webm", 0, "unreadable"),
        ("text.webm", 0, "not_video"),
        ("picture.webm", 0, "not_video"),
        ("audio_only.webm", 0, "no_video_stream"),
        ("truncated.webm", 0, "truncated"),
        ("corrupt.webm", 0, "corrupt"),  # the only fault a shallow scan cannot see
        ("gap.webm", 0, "corrupt"),
        ("h264.mp4", 0, "codec_unsupported"),
        ("short.webm", 0, "too_short"),
        ("label.webm", NUM_CLASSES, "label_out_of_range"),
    ]
    manifest = d / "manifest.txt"
    manifest.write_text("".join(f"{path} {label}\n" for path, label, _ in rows))
    return FaultCorpus(manifest, {path: reason for path, _, reason in rows})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.data.faults DIR")
    corpus = write_fault_corpus(sys.argv[1])
    (corpus.manifest.parent / "expected.json").write_text(json.dumps(corpus.expected, indent=1) + "\n")
    print(f"wrote {corpus.manifest} ({len(corpus.expected)} entries), num_classes {corpus.num_classes}, "
          f"min_frames {corpus.min_frames}")
