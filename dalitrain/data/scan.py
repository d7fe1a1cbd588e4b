"""`dalitrain scan`: probe every video of one or more manifests once; write a JSON index with a quarantine.

A DALI video pipeline that meets a file it cannot decode fails for good, hours into a run. The scan finds those
files first: every manifest entry gets a record (codec, size, frame count, frame rate, ...) that is `ok` or
carries the reason it is quarantined. Pipelines read the index with `load_index` and keep `usable_records`.

Reasons (stable strings; a record carries the first one that applies, in this order):

  missing             the file does not exist
  empty               the file has zero bytes
  unreadable          the path exists but cannot be read as a file (a directory, permissions, I/O error)
  not_video           FFmpeg recognises no video container in it (e.g. a text file or a JPEG named .webm)
  no_video_stream     a container without a video stream (e.g. audio only)
  truncated           the video ends early: the file starts like a video container but does not open or demux,
                      or its packets stop before the frame count or duration the container claims (short by
                      more than 5% and at least 2 frames; the tolerance absorbs rounded durations)
  corrupt             damage inside the stream: packets missing mid-stream while the stream still reaches its
                      end (the demuxer skipped damaged data), or, with --deep, decoding fails part-way (the
                      reason names the frame) or yields fewer frames than there are packets. Most corruption
                      needs --deep: every packet is there, their contents are broken. --deep decodes VP8 / VP9
                      with libvpx, which refuses a damaged frame that FFmpeg's own decoders (PyAV's, torchcodec's
                      and DALI's CPU decoder) conceal and return as garbage, and other codecs with FFmpeg's error
                      detection on (`_strict_decoder`)
  codec_unsupported   the decoder the scan is for (`--decoder`) cannot read this stream: DALI's CPU decoder
                      reads VP8, VP9 and MJPEG only; NVDEC more codecs, within limits of chroma format, bit
                      depth, size and the GPU's generation (`nvdec_limit`, --gpu-arch); FFmpeg's decoders
                      (PyAV, torchcodec) every codec the probe opened (see DECODER_CODECS)
  too_short           fewer frames than a clip needs: --min-frames, or with --config num_frames * stride for
                      `clip` / `segment` sampling and num_frames for `uniform`
  label_out_of_range  the label is not in [0, num_classes)

Probing runs once per distinct file, in parallel processes. The index doubles as the cache: a re-scan reuses the
probe of every file whose path, size and mtime are unchanged (a shallow scan also reuses deep probes, a deep scan
only deep ones), so only new or changed files are read again. The decoder check, clip length and labels are
re-applied on every scan, so changing them needs no re-probe.

The index is JSON, one record per line: `{"format": "dalitrain-scan-index", "version": 1, "decoder": ..., "deep":
..., "records": [ScanRecord, ...]}`. `load_index` keys the records by `record_key(manifest, row)`; `index_decoder`
says which decoder its verdicts hold for (an index of an earlier version, with a "device", was made for DALI's
decoder there), and the loader refuses an index made for another decoder family than its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import av

from dalitrain.config import ConfigError, DataConfig, load_config, resolve_path
from dalitrain.data.manifest import ManifestEntry, read_manifest
from dalitrain.data.parallel import default_workers, map_in_processes
from dalitrain.data.probe import probe_video
from dalitrain.errors import DalitrainError, UsageError
from dalitrain.progress import progress

MISSING = "missing"
EMPTY = "empty"
UNREADABLE = "unreadable"
NOT_VIDEO = "not_video"
NO_VIDEO_STREAM = "no_video_stream"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
CODEC_UNSUPPORTED = "codec_unsupported"
TOO_SHORT = "too_short"
LABEL_OUT_OF_RANGE = "label_out_of_range"

# Reasons that belong to the file itself (cached with its probe); the others depend on the scan's settings.
FILE_REASONS = (MISSING, EMPTY, UNREADABLE, NOT_VIDEO, NO_VIDEO_STREAM, TRUNCATED, CORRUPT)

# FFmpeg codec names each decoder reads; None: every codec FFmpeg opened in the probe. DALI's rows: the docstring of
# DALI 2.4's fn.experimental.decoders.video ("supported by both CPU and GPU backends: VP8, VP9, MJPEG; by the GPU
# backend only: AV1, MPEG-4, H.264/AVC, H.265/HEVC"). The CPU row is also checked here on DALI 2.4 (h264, hevc,
# mpeg4 and mpeg2video fail with "not supported by the CPU variant"); the NVDEC row is not (no GPU).
DECODER_CODECS = {
    "torchcodec": None,
    "pyav": None,
    "dali": frozenset({"vp8", "vp9", "mjpeg"}),
    "nvdec": frozenset({"vp8", "vp9", "mjpeg", "av1", "mpeg4", "h264", "hevc"}),
}
# Decoders whose verdicts are the same: an index made for one serves the others of its family.
DECODER_FAMILY = {"torchcodec": "ffmpeg", "pyav": "ffmpeg", "dali": "dali", "nvdec": "nvdec"}
# NVDEC's frame sizes per codec, (min side, max side), from NVIDIA's Video Codec SDK support matrix (Turing and
# later); H.264 decodes 8-bit 4:2:0 only, and no codec's 4:2:2 decodes before Blackwell.
_NVDEC_SIDES = {"h264": (48, 4096), "hevc": (144, 8192), "vp9": (128, 8192), "av1": (128, 8192),
                "vp8": (48, 4096), "mpeg4": (48, 2032), "mjpeg": (64, 16384)}
_EIGHT_BIT_420 = frozenset({"yuv420p", "yuvj420p", "nv12"})
# What NVDEC decodes depends on the GPU's generation too (Video Codec SDK 13.0, NVDEC application note, "NVDEC
# Hardware Capabilities"), by compute capability x 10: AV1 on GA10x (sm_86, sm_87), Ada (sm_89) and Blackwell (sm_100
# and later) only, not on Turing, GA100 (A100) or Hopper (H100, H200); HEVC 4:4:4 from Turing (sm_75) on.
_NVDEC_AV1_ARCHS = frozenset({86, 87, 89})
_NVDEC_AV1_FROM = 100
_NVDEC_HEVC_444_FROM = 75
_PREPARE_CODEC = {"dali": "vp9", "nvdec": "h264"}  # what `dalitrain prepare --codec` should write for each
STRICT_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}  # --deep's decoder per codec (`_strict_decoder`)

# First bytes of the containers video datasets come in: a file that starts like one but does not open was cut.
_CONTAINER_MAGIC = (
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (4, b"ftyp"),  # MP4 / MOV
    (8, b"AVI "),  # RIFF AVI
    (0, b"OggS"),
    (0, b"FLV"),
)

INDEX_FORMAT = "dalitrain-scan-index"
INDEX_VERSION = 1


class ScanIndexError(DalitrainError, ValueError):
    """A missing or damaged index file, one line naming it."""


@dataclass(frozen=True)
class FileProbe:
    """What one file holds, independent of any manifest: the cached unit."""

    path: str
    size: int  # bytes; -1 when the file is missing
    mtime: float
    deep: bool  # every frame was decoded
    fault: Optional[str] = None  # one of FILE_REASONS, None when the file reads
    detail: str = ""  # FFmpeg's message or the numbers behind the fault
    codec: str = ""
    width: int = 0
    height: int = 0
    frames: int = 0  # frames present (packets demuxed), which may be fewer than the container claims
    fps: float = 0.0
    duration: float = 0.0  # seconds, as the container claims
    pix_fmt: str = ""  # FFmpeg's pixel format: chroma subsampling and bit depth ("" in indexes before it)
    vfr: bool = False  # variable frame rate (False in indexes before it): clips are sampled by presentation time


@dataclass(frozen=True)
class ScanRecord:
    """One manifest entry and the verdict on its video: an index record."""

    path: str  # absolute video path
    dataset: str
    manifest: str  # absolute manifest path
    row: int  # the entry's row in its manifest (the `index` a Batch carries)
    label: int
    ok: bool
    reason: Optional[str]  # None when ok
    detail: str
    codec: str
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    size: int
    mtime: float
    deep: bool
    pix_fmt: str = ""
    vfr: bool = False

    @property
    def key(self) -> str:
        return record_key(self.manifest, self.row)


@dataclass(frozen=True)
class ScanTarget:
    """One manifest to scan and the rules its entries are checked against."""

    dataset: str
    manifest: Path
    root: Path  # relative video paths are joined to it
    num_classes: Optional[int]
    min_frames: int


def record_key(manifest: str | Path, row: int) -> str:
    """An entry's key in the index: `<absolute manifest path>:<row>`."""
    return f"{os.path.abspath(manifest)}:{row}"


# ---------------------------------------------------------------------------------------------------------
# Probing one file (runs in worker processes)


def _looks_like_container(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _CONTAINER_MAGIC)


class StreamDamage(Exception):
    """Decoding failed at `frame` (its index in decode order)."""

    def __init__(self, frame: int, reason: str):
        super().__init__(f"decoding failed at frame {frame}: {reason}")


def _strict_decoder(stream) -> av.CodecContext:
    """The decoder that reports damage instead of concealing it: FFmpeg's native VP8 / VP9 decoders hide a damaged
    partition (a VP9 file with 2 kB overwritten decodes every frame with no error, even with `err_detect=explode`,
    and so does DALI's CPU decoder, which uses them) where libvpx refuses the packet; for the other codecs, the
    native decoder with every `err_detect` check on (not measured against concealed damage here)."""
    name = STRICT_DECODERS.get(stream.codec_context.codec.canonical_name)
    if name in av.codecs_available:
        context = av.CodecContext.create(name, "r")
        context.extradata = stream.codec_context.extradata
    else:
        context = stream.codec_context
        context.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
    context.thread_count = 1  # the scan probes files in parallel processes
    return context


def _decode_all(path: str) -> int:
    """Frames decoded from the first video stream by its strict decoder; raises StreamDamage where decoding
    fails, and av.error.FFmpegError where the container does."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        decoder, decoded = _strict_decoder(stream), 0
        for packet in container.demux(stream):  # its last, empty packet flushes the frames the decoder holds
            try:
                decoded += len(decoder.decode(packet))
            except av.error.FFmpegError as err:
                raise StreamDamage(decoded, err.strerror or str(err)) from None
        return decoded


def probe_file(path: str, deep: bool) -> FileProbe:
    """Probe one video; never raises for a bad file (the fault says what is wrong)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return FileProbe(path, -1, 0.0, deep, MISSING, "no such file")
    except OSError as err:
        return FileProbe(path, -1, 0.0, deep, UNREADABLE, err.strerror or str(err))
    fault = functools.partial(FileProbe, path, stat.st_size, stat.st_mtime, deep)
    if stat.st_size == 0:
        return fault(EMPTY, "0 bytes")
    try:
        info = probe_video(path, count_packets=True)
    except OSError as err:  # before FFmpegError: av's PermissionError, IsADirectoryError, ... are both
        return fault(UNREADABLE, err.strerror or str(err))
    except av.error.FFmpegError as err:
        cut = isinstance(err, EOFError) or _looks_like_container(path)
        return fault(TRUNCATED if cut else NOT_VIDEO, err.strerror or str(err))
    except ValueError as err:  # probe_video's "no video stream"
        return fault(NO_VIDEO_STREAM, str(err))
    still = info.container == "image2" or info.container.endswith("_pipe")  # FFmpeg's image demuxers
    if still and info.packets <= 1:
        return fault(NOT_VIDEO, f"a still image ({info.container})")
    measured = functools.partial(fault, codec=info.codec, width=info.width, height=info.height,
                                 frames=info.packets, fps=info.fps, duration=info.duration, pix_fmt=info.pix_fmt,
                                 vfr=info.vfr)
    # the frames the container promises; at a variable rate duration x average rate promises nothing
    claimed = info.frames if info.vfr else max(info.frames, round(info.duration * info.fps))
    tolerance = max(1, 0.05 * claimed)
    if claimed - info.packets > tolerance:
        if claimed - info.end_time * info.fps > tolerance:
            seconds = f"at {info.end_time:.2f} s of {claimed / info.fps:.2f} s, " if info.fps else ""
            return measured(TRUNCATED, f"video ends early ({seconds}{info.packets} of {claimed} frames)")
        return measured(CORRUPT, f"{claimed - info.packets} of {claimed} frames missing mid-stream")
    if deep:
        try:
            decoded = _decode_all(path)
        except StreamDamage as err:
            return measured(CORRUPT, str(err))
        except av.error.FFmpegError as err:
            return measured(CORRUPT, f"decoding failed: {err.strerror or err}")
        if decoded < info.packets:
            return measured(CORRUPT, f"decoded {decoded} of {info.packets} frames")
    return measured()


def _reusable(cached: Optional[FileProbe], path: str, deep: bool) -> bool:
    """A cached probe stands for the file when nothing about the file changed and it went as deep as asked."""
    if cached is None or cached.fault == MISSING or (deep and not cached.deep):
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return stat.st_size == cached.size and stat.st_mtime == cached.mtime


def probe_files(paths: Iterable[str], deep: bool, workers: Optional[int] = None,
                cache: Optional[dict[str, FileProbe]] = None) -> tuple[dict[str, FileProbe], int]:
    """Probes of the distinct `paths`, reusing valid `cache` entries; returns (probes, number probed now)."""
    cache = cache or {}
    probes, todo = {}, []
    for path in dict.fromkeys(paths):
        if _reusable(cache.get(path), path, deep):
            probes[path] = cache[path]
        else:
            todo.append(path)
    for probe in progress(map_in_processes(functools.partial(probe_file, deep=deep), todo, workers), total=len(todo),
                          desc="scan"):
        probes[probe.path] = probe
    return probes, len(todo)


# ---------------------------------------------------------------------------------------------------------
# Verdicts and the index


def nvdec_limit(probe: FileProbe, gpu_arch: Optional[int] = None) -> Optional[str]:
    """Why NVDEC cannot decode this stream of a codec it knows (chroma format, bit depth, size; with `gpu_arch`,
    the compute capability x 10 of the GPU that will decode, what its generation lacks), or None."""
    if gpu_arch is not None:
        if probe.codec == "av1" and gpu_arch not in _NVDEC_AV1_ARCHS and gpu_arch < _NVDEC_AV1_FROM:
            return f"NVDEC on sm_{gpu_arch} does not decode AV1 (sm_86, sm_87, sm_89 and sm_100 on do)"
        if probe.codec == "hevc" and "444" in probe.pix_fmt and gpu_arch < _NVDEC_HEVC_444_FROM:
            return f"NVDEC on sm_{gpu_arch} does not decode 4:4:4 HEVC ({probe.pix_fmt}; sm_75 on does)"
    if probe.codec == "h264" and probe.pix_fmt and probe.pix_fmt not in _EIGHT_BIT_420:
        return f"NVDEC decodes 8-bit 4:2:0 H.264 only, this is {probe.pix_fmt}"
    if "422" in probe.pix_fmt:
        return f"NVDEC does not decode 4:2:2 ({probe.pix_fmt}) before Blackwell"
    low, high = _NVDEC_SIDES.get(probe.codec, (0, 1 << 30))
    if not low <= min(probe.width, probe.height) or max(probe.width, probe.height) > high:
        return f"NVDEC decodes {probe.codec} from {low} to {high} pixels a side, this is {probe.width}x{probe.height}"
    return None


def _broken_rule(entry: ManifestEntry, probe: FileProbe, target: ScanTarget, decoder: str,
                 gpu_arch: Optional[int]) -> tuple[Optional[str], str]:
    """The first rule of this scan that a readable file breaks, as (reason, detail); (None, "") if none."""
    codecs = DECODER_CODECS[decoder]
    if codecs is not None and probe.codec not in codecs:
        return CODEC_UNSUPPORTED, f"{decoder} does not decode {probe.codec}"
    limit = nvdec_limit(probe, gpu_arch) if decoder == "nvdec" else None
    if limit is not None:
        return CODEC_UNSUPPORTED, limit
    if probe.frames < target.min_frames:
        return TOO_SHORT, f"{probe.frames} frames, a clip needs {target.min_frames}"
    if target.num_classes is not None and entry.label >= target.num_classes:
        return LABEL_OUT_OF_RANGE, f"label {entry.label} not in [0, {target.num_classes})"
    return None, ""


def classify(entry: ManifestEntry, probe: FileProbe, target: ScanTarget, decoder: str,
             gpu_arch: Optional[int] = None) -> ScanRecord:
    """The record of one manifest entry: the file's own fault first, then the scan's rules."""
    reason, detail = probe.fault, probe.detail
    if reason is None:
        reason, detail = _broken_rule(entry, probe, target, decoder, gpu_arch)
    file_fields = {f.name: getattr(probe, f.name) for f in dataclasses.fields(FileProbe) if f.name != "fault"}
    return ScanRecord(**{**file_fields, "detail": detail}, dataset=target.dataset,
                      manifest=os.path.abspath(target.manifest), row=entry.row, label=entry.label,
                      ok=reason is None, reason=reason)


def _cached_probes(records: Iterable[ScanRecord]) -> dict[str, FileProbe]:
    """The file probes behind an earlier index's records (a file's own fault is kept, rule verdicts are not)."""
    fields = {f.name for f in dataclasses.fields(FileProbe)} - {"fault", "detail"}
    cache = {}
    for record in records:
        own = record.reason if record.reason in FILE_REASONS else None
        cache[record.path] = FileProbe(**{name: getattr(record, name) for name in fields},
                                       fault=own, detail=record.detail if own else "")
    return cache


def load_index(path: str | Path) -> dict[str, ScanRecord]:
    """Records of an index by `record_key(manifest, row)`; a damaged file raises one line naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScanIndexError(f"{path}: scan index not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScanIndexError(f"{path}: damaged scan index, not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ScanIndexError(f"{path}: not a dalitrain scan index (no \"format\": \"{INDEX_FORMAT}\")")
    if data.get("version") != INDEX_VERSION:
        raise ScanIndexError(f"{path}: scan index version {data.get('version')!r}, expected {INDEX_VERSION}")
    records = {}
    for number, raw in enumerate(data.get("records", [])):
        try:
            record = ScanRecord(**raw)
        except TypeError as err:
            raise ScanIndexError(f"{path}: damaged scan index, record {number}: {err}") from None
        records[record.key] = record
    return records


def index_decoder(path: str | Path) -> str:
    """The decoder an index's verdicts hold for (an index written before it was recorded: DALI's, on its device)."""
    header = json.loads(Path(path).read_text())
    return header.get("decoder") or {"cpu": "dali", "gpu": "nvdec"}.get(header.get("device"), "dali")


def write_index(path: str | Path, records: list[ScanRecord], decoder: str, deep: bool,
                gpu_arch: Optional[int] = None) -> None:
    """Write the index atomically (temporary file + rename): a crash never leaves a half-written index.
    One record per line, so that grep and diff work on it."""
    path = Path(path)
    header = json.dumps({"format": INDEX_FORMAT, "version": INDEX_VERSION, "decoder": decoder, "deep": deep,
                         "gpu_arch": gpu_arch})
    body = ",\n".join(json.dumps(dataclasses.asdict(r)) for r in records)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(f'{header[:-1]}, "records": [\n{body}\n]}}\n')
        tmp.replace(path)
    except OSError as err:
        if tmp.exists():
            tmp.unlink()
        raise ScanIndexError(f"{path}: cannot write the scan index ({err.strerror or err})") from None


def usable_records(index: dict[str, ScanRecord], dataset: str,
                   manifest: str | Path | None = None) -> list[ScanRecord]:
    """The ok records of a dataset (of one of its manifests when given), by row: what a pipeline may read."""
    wanted = os.path.abspath(manifest) if manifest is not None else None
    chosen = [r for r in index.values() if r.ok and r.dataset == dataset and wanted in (None, r.manifest)]
    return sorted(chosen, key=lambda r: (r.manifest, r.row))


def summary_line(dataset: str, records: list[ScanRecord], decoder: str) -> str:
    """`name: N ok, M quarantined (reason: k, ...)`, and the command that re-encodes what the decoder cannot read."""
    reasons = Counter(r.reason for r in records if not r.ok)
    line = f"{dataset}: {len(records) - sum(reasons.values())} ok, {sum(reasons.values())} quarantined"
    if reasons:
        line += " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items())) + ")"
    variable = sum(r.ok and r.vfr for r in records)
    if variable:  # readable, but a decoder that counts frames would sample them unevenly in time
        line += f"; {variable} at a variable frame rate (PyAV samples them by presentation time)"
    manifests = sorted({r.manifest for r in records if r.reason == CODEC_UNSUPPORTED})
    if manifests and decoder in _PREPARE_CODEC:
        line += (f"; re-encode for {decoder}: dalitrain prepare {manifests[0]} --codec {_PREPARE_CODEC[decoder]} "
                 "--out DIR")
    return line


def scan(targets: list[ScanTarget], decoder: str, deep: bool, workers: Optional[int] = None,
         previous_index: str | Path | None = None, gpu_arch: Optional[int] = None) -> tuple[list[ScanRecord], int]:
    """Records of every entry of every target, reusing the probes of `previous_index` where the files did not
    change; returns (records, number of files probed now). `gpu_arch`: see `nvdec_limit`."""
    # Every manifest is read before anything else, so that a malformed one fails fast and alone.
    jobs = [(target, entry, os.path.abspath(target.root / entry.path))
            for target in targets for entry in read_manifest(target.manifest)]
    cache = _previous_probes(Path(previous_index)) if previous_index is not None else {}
    probes, probed = probe_files([path for _, _, path in jobs], deep, workers, cache)
    return [classify(entry, probes[path], target, decoder, gpu_arch) for target, entry, path in jobs], probed


def _previous_probes(path: Path) -> dict[str, FileProbe]:
    """The cache held by an earlier index at `path`; a damaged one is reported and ignored (probe afresh)."""
    if not path.exists():
        return {}
    try:
        return _cached_probes(load_index(path).values())
    except ScanIndexError as err:
        print(f"dalitrain scan: warning: {err}; probing every file again", file=sys.stderr)
        return {}


# ---------------------------------------------------------------------------------------------------------
# Command line


def positive_int(text: str) -> int:
    """argparse type for counts and sizes (frames, classes, workers, GOP, short side)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifests", nargs="*", metavar="MANIFEST",
                        help="manifests to scan (each one a dataset named by its path); or use --config")
    parser.add_argument("--config", metavar="EXPERIMENT.yaml",
                        help="scan the train and val manifests of every dataset of an experiment config")
    parser.add_argument("--decoder", choices=["auto", *DECODER_CODECS], default="auto",
                        help="the decoder that will read the videos (default auto: the one the loader uses here, "
                             "from the config's data.device and data.decoder and what is installed)")
    parser.add_argument("--gpu-arch", type=positive_int, metavar="N",
                        help="with --decoder nvdec: the compute capability x 10 of the GPUs that will decode (80: "
                             "A100, 90: H100), for the codecs their NVDEC lacks (default: this machine's GPU)")
    parser.add_argument("--deep", action="store_true", help="decode every frame to find mid-stream corruption")
    parser.add_argument("--out", required=True, metavar="INDEX.json", help="the index to write (and reuse)")
    parser.add_argument("--root", metavar="DIR",
                        help="directory relative video paths are joined to (default: the manifest's directory)")
    parser.add_argument("--num-classes", type=positive_int, metavar="N", help="labels must be in [0, N)")
    parser.add_argument("--min-frames", type=positive_int, metavar="N",
                        help="frames a clip needs (default 1; with --config: the config's clip length)")
    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help="probing processes (default: the number of cores)")


def _targets_from_config(path: str, min_frames: Optional[int]) -> tuple[list[ScanTarget], DataConfig]:
    cfg = load_config(path)
    data = cfg.data
    targets = []
    for ds in data.datasets:
        if ds.task == "localisation":  # its "manifests" are AVA's box CSVs: the loader probes its movies itself
            print(f"dalitrain scan: {ds.name}: localisation dataset not scanned (its videos are probed when loaded)",
                  file=sys.stderr)
            continue
        clip = data.num_frames if ds.sampling == "uniform" else data.num_frames * data.stride
        root = resolve_path(data.base_dir, ds.root)
        for manifest in (ds.manifest, ds.val_manifest):
            if manifest is not None:
                targets.append(ScanTarget(ds.name, resolve_path(data.base_dir, manifest), root, ds.num_classes,
                                          min_frames or clip))
    return targets, data


def scan_decoder(requested: str, data: Optional[DataConfig]) -> str:
    """`--decoder auto`: what the loader would use here, for the config's data.device and data.decoder (without
    a config: the defaults) and the decoders installed."""
    if requested != "auto":
        return requested
    from dalitrain.pipelines.loader import resolve_decoder, resolve_device  # the loader imports this module

    data = data or DataConfig(datasets=[])
    return resolve_decoder(data.decoder, resolve_device("auto", data.device))


def _targets(args: argparse.Namespace) -> tuple[list[ScanTarget], str]:
    """The scan targets and the decoder, from the command line or the config; one-line errors otherwise."""
    if args.config:
        if args.manifests or args.root or args.num_classes is not None:
            raise ConfigError(f"{args.config}: give manifests (with --root/--num-classes) or --config, not both")
        targets, data = _targets_from_config(args.config, args.min_frames)
        return targets, scan_decoder(args.decoder, data)
    if not args.manifests:
        raise UsageError("nothing to scan: give MANIFEST arguments or --config")
    targets = [ScanTarget(m, Path(m), Path(args.root) if args.root else Path(m).parent, args.num_classes,
                          args.min_frames or 1) for m in args.manifests]
    return targets, scan_decoder(args.decoder, None)


def scan_gpu_arch(requested: Optional[int], decoder: str) -> Optional[int]:
    """The GPU generation NVDEC's verdicts are for: --gpu-arch, else this machine's GPU, else None (the limits of
    every generation from Turing on; the loader falls back to PyAV for a batch NVDEC then fails on)."""
    if decoder != "nvdec":
        if requested is not None:
            raise UsageError(f"--gpu-arch is for --decoder nvdec; the verdicts are for {decoder}")
        return None
    import torch  # here, not at the top: the probing processes import this module and never need it

    if requested is None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return 10 * major + minor
    return requested


def run(args: argparse.Namespace) -> int:
    targets, decoder = _targets(args)
    gpu_arch = scan_gpu_arch(args.gpu_arch, decoder)
    out = Path(args.out)
    records, probed = scan(targets, decoder, args.deep, args.workers, previous_index=out, gpu_arch=gpu_arch)
    write_index(out, records, decoder, args.deep, gpu_arch)
    for dataset in dict.fromkeys(t.dataset for t in targets):
        print(summary_line(dataset, [r for r in records if r.dataset == dataset], decoder))
    files = len({r.path for r in records})
    on = f" on sm_{gpu_arch}" if gpu_arch is not None else ""
    print(f"{files} files, {probed} probed, {files - probed} from cache -> {out} "
          f"(verdicts for the {decoder} decoder{on})")
    return 0
