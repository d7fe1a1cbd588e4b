"""`dalitrain prepare`: transcode a dataset for the device that will decode it.

DALI's CPU decoder reads VP8, VP9 and MJPEG only, and every clip a reader samples starts with a seek to the key
frame before it, so a corpus of H.264 files with 250-frame GOPs is both unreadable on the CPU and slow on the GPU.
`prepare` re-encodes every video of a manifest with PyAV (FFmpeg) into DIR, in parallel processes:

- `--codec vp9` (WebM, for DALI on the CPU or the GPU), `h264` (MP4, NVDEC only), `mjpeg` (Matroska, every frame
  a key frame: the cheapest seeks, the largest files);
- `--short-side N` scales the shorter side to N keeping the aspect ratio, both sides rounded to even numbers
  (4:2:0 chroma needs them);
- `--gop N` puts a key frame every N frames, so a seek decodes at most N - 1 frames it does not use.

Every decoded frame is re-encoded at the source's average frame rate (variable frame rates become constant),
so frame-numbered segments keep their meaning; audio is dropped. Each output is written under a temporary name
and renamed once complete, so an interrupted run resumes where it stopped: outputs that exist are skipped. A
video that fails is reported with its reason and left out of the new manifest, which is written into DIR under
the source manifest's name, with labels and segment columns kept and paths relative to DIR.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av

from dalitrain.data.manifest import read_manifest, write_manifest
from dalitrain.data.parallel import default_workers, map_in_processes
from dalitrain.data.scan import positive_int
from dalitrain.errors import InputError, UsageError
from dalitrain.progress import progress


@dataclass(frozen=True)
class OutputCodec:
    encoder: str  # FFmpeg encoder name
    suffix: str
    muxer: str  # FFmpeg format name: the temporary file's name does not tell FFmpeg which container to write
    pix_fmt: str
    options: tuple[tuple[str, str], ...]  # encoder options (a tuple: the dataclass stays hashable)


OUTPUT_CODECS = {
    # Constant quality (crf with no bitrate target); cpu-used 5 and row-mt trade a little size for speed.
    "vp9": OutputCodec("libvpx-vp9", ".webm", "webm", "yuv420p",
                       (("crf", "32"), ("b", "0"), ("cpu-used", "5"), ("row-mt", "1"))),
    "h264": OutputCodec("libx264", ".mp4", "mp4", "yuv420p", (("crf", "23"), ("preset", "fast"))),
    # FFmpeg's `-q:v 3`: a fixed JPEG quantiser (lambda = 3 * FF_QP2LAMBDA) instead of a 200 kbit/s target.
    "mjpeg": OutputCodec("mjpeg", ".mkv", "matroska", "yuvj420p", (("flags", "+qscale"), ("global_quality", "354"))),
}


def _even(side: float) -> int:
    """The nearest even number, halves rounded up (Python's round() sends 16.5 down but 17.5 up)."""
    return max(2, 2 * math.floor(side / 2 + 0.5))


def output_size(width: int, height: int, short_side: Optional[int]) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `short_side` (None: unchanged), both rounded to even."""
    if short_side is not None:
        scale = short_side / min(width, height)
        width, height = width * scale, height * scale
    return _even(width), _even(height)


def transcode(source: str, target: str, codec: OutputCodec, short_side: Optional[int], gop: int) -> None:
    """Re-encode the first video stream of `source` into `target`; `target` appears only when complete."""
    partial = target + ".part"
    try:
        with av.open(source) as src, av.open(partial, "w", format=codec.muxer) as dst:
            if not src.streams.video:
                raise ValueError("no video stream")
            in_stream = src.streams.video[0]
            rate = Fraction(in_stream.average_rate or in_stream.guessed_rate or 25)
            out = dst.add_stream(codec.encoder, rate=rate)
            out.width, out.height = output_size(in_stream.codec_context.width, in_stream.codec_context.height,
                                                short_side)
            out.pix_fmt = codec.pix_fmt
            out.codec_context.gop_size = gop
            out.codec_context.thread_count = 1  # the files run in parallel processes already
            out.codec_context.options = dict(codec.options)
            frames = 0
            try:
                for frame in src.decode(in_stream):
                    frame = frame.reformat(out.width, out.height, codec.pix_fmt)
                    frame.pts, frame.time_base = frames, 1 / rate
                    dst.mux(out.encode(frame))
                    frames += 1
            except av.error.FFmpegError as err:
                raise ValueError(f"failed after {frames} frames: {err.strerror or err}") from None
            if frames == 0:
                raise ValueError("no frame decoded")
            dst.mux(out.encode())
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _prepare_one(job: tuple[str, str], codec: OutputCodec, short_side: Optional[int], gop: int) -> Optional[str]:
    """Transcode one (source, target) unless done; returns None, "skipped", or the failure's reason."""
    source, target = job
    if os.path.exists(target):
        return "skipped"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        transcode(source, target, codec, short_side, gop)
    except FileNotFoundError:
        return "no such file"
    except (av.error.FFmpegError, ValueError, OSError) as err:
        return getattr(err, "strerror", None) or str(err) or type(err).__name__
    return None


def output_path(entry_path: str, suffix: str) -> Path:
    """Where a manifest path lands inside DIR: the same relative path with the new suffix (an absolute path
    keeps its folders below the filesystem root)."""
    path = Path(entry_path)
    if path.is_absolute():
        path = Path(*path.parts[1:])
    return path.with_suffix(suffix)


def prepare(manifest: str | Path, out_dir: str | Path, codec_name: str, short_side: Optional[int] = None,
            gop: int = 8, root: str | Path | None = None, workers: Optional[int] = None) -> tuple[Path, dict]:
    """Transcode a manifest's videos into `out_dir` and write its new manifest there.

    Returns (new manifest path, {source path: None (done) | "skipped" (already done) | failure reason}).
    """
    manifest, out_dir = Path(manifest), Path(out_dir)
    root = Path(root) if root is not None else manifest.parent
    if os.path.abspath(out_dir) == os.path.abspath(root):
        raise UsageError(f"{out_dir}: --out must differ from the dataset root (the sources would be replaced)")
    codec = OUTPUT_CODECS[codec_name]
    entries = read_manifest(manifest)
    sources = [os.path.abspath(root / entry.path) for entry in entries]
    targets: dict[str, str] = {}  # output -> source: two sources must not become one output
    outcome: dict[str, Optional[str]] = {}
    for entry, source in zip(entries, sources):
        target = os.path.abspath(out_dir / output_path(entry.path, codec.suffix))
        if targets.setdefault(target, source) != source:
            outcome[source] = f"same output name as {targets[target]}"
    jobs = [(source, target) for target, source in targets.items()]
    work = functools.partial(_prepare_one, codec=codec, short_side=short_side, gop=gop)
    for (source, _), result in zip(jobs, progress(map_in_processes(work, jobs, workers), total=len(jobs),
                                                  desc="prepare")):
        outcome.setdefault(source, result)

    kept = []
    for entry, source in zip(entries, sources):
        if outcome[source] in (None, "skipped"):
            kept.append(replace(entry, path=output_path(entry.path, codec.suffix).as_posix(), row=len(kept)))
    if not kept:
        raise InputError(f"{manifest}: no video could be transcoded; no manifest written")
    new_manifest = out_dir / manifest.name
    write_manifest(new_manifest, kept)
    return new_manifest, outcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="MANIFEST")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the videos and the new manifest go")
    parser.add_argument("--codec", required=True, choices=sorted(OUTPUT_CODECS),
                        help="vp9 or mjpeg for DALI on the CPU; any of them for NVDEC")
    parser.add_argument("--short-side", type=positive_int, metavar="N",
                        help="scale the shorter side to N (default: keep)")
    parser.add_argument("--gop", type=positive_int, default=8, metavar="N",
                        help="a key frame every N frames (default 8)")
    parser.add_argument("--root", metavar="DIR",
                        help="directory relative video paths are joined to (default: the manifest's directory)")
    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help="transcoding processes (default: the number of cores)")


def run(args: argparse.Namespace) -> int:
    new_manifest, outcome = prepare(args.manifest, args.out, args.codec, args.short_side, args.gop, args.root,
                                    args.workers)
    failed = {source: reason for source, reason in outcome.items() if reason not in (None, "skipped")}
    for source, reason in failed.items():
        print(f"failed: {source}: {reason}")
    done = sum(1 for reason in outcome.values() if reason is None)
    skipped = sum(1 for reason in outcome.values() if reason == "skipped")
    print(f"{done} transcoded, {skipped} already done, {len(failed)} failed -> {new_manifest}")
    return 0
