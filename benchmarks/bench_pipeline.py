"""`dalitrain bench pipeline [--quick] [--json FILE] [--corpus DIR]`: training clips/s of dalitrain's loader
beside the loaders users would otherwise write, and beside the raw decoder (the ceiling), in one run.

Recipe for everyone (MViTv2-S): 16 frames at stride 4 from a random start, random short side in [256, 320],
random 224 crop, random flip, normalise, C,T,H,W float32, batch 8, on the same number of CPU cores.
- dalitrain: the loader with each CPU decode strategy (`data.decoder`), and the default;
- peers, as their projects build them: PySlowFast (PyAV decodes and converts every frame of the clip's span,
  torch augments, in a DataLoader with one worker per core), MMAction2 (decord `get_batch` + DataLoader),
  torchcodec (`get_frames_at` + DataLoader); a peer whose library is missing is skipped with one line;
- the ceiling: each decoder alone decoding exactly the clip's frames from the preceding key frame, no
  augmentation, no framework, one process per core; the fastest one counts;
- the released MultiTrain / PySlowFast augmentation (`RELEASED_AUGMENT`: random-resized crop, RandAugment
  rand-m7-n4-mstd0.5-inc1, random erasing 0.25) on dalitrain's default loader, with one sample per clip and with
  repeated augmentation (`data.num_samples: 2`: 4 clips x 2 samples a batch). These rows count samples: goals,
  samples/s with 2 samples >= 1.8x with 1, and the augmentation <= 15% of the loader's CPU time per sample.
Every loader decodes the same clips: the peers and the ceilings take those of dalitrain's sampling plan.
Throughput is steady state: the first batches (worker start-up, graph build) are not timed. The loaders run in
interleaved rounds and each keeps its best round. On a shared machine absolute numbers move with the load; the
ratios, measured in the same run, are what to compare.

The corpus: the `bench` synthetic corpus (`dalitrain synth --preset bench`: VP9, short side 256, 25 fps, a key
frame a second, 3-20 s), generated once into a cache folder (about 80 s on 2 cores), or any folder passed with
--corpus.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import av
import numpy as np
import torch
import torch.nn.functional as F

from dalitrain.benchmarks import pipeline_scaling
from dalitrain.config import AugmentConfig, DataConfig, DatasetConfig
from dalitrain.data.synth import generate_corpus
from dalitrain.figures import bar_chart, save
from dalitrain.pipelines.decode import decode_pyav, decode_torchcodec, torchcodec_available
from dalitrain.pipelines.loader import CPU_DECODERS, VideoLoader, resolve_decoder, train_loader

NUM_FRAMES, STRIDE, SHORT_SIDE, CROP, BATCH = 16, 4, (256, 320), 224, 8
MEAN, STD = 0.45, 0.225
RELEASED_AUGMENT = AugmentConfig(crop="resized", rand_augment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.25)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dalitrain" / "bench_pipeline"


# ---------------------------------------------------------------------------------------------------------
# The corpus


def corpus_videos(folder: Optional[str]) -> list[Path]:
    """The videos of `folder`, or of the cached `bench` synthetic corpus (generated on first use)."""
    if folder is None:
        folder = CACHE / "corpus"
        print(f"bench corpus: {folder} (generated on first use)", flush=True)
        generate_corpus(folder, preset="bench")
    videos = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".webm", ".mkv", ".mp4", ".avi"))
    if not videos:
        raise SystemExit(f"{folder}: no videos (.webm/.mkv/.mp4/.avi) found")
    return videos


# ---------------------------------------------------------------------------------------------------------
# Peers: each project's way to decode, the same torch augmentation (PySlowFast's), a DataLoader


def decode_pyslowfast(path: str, frames: np.ndarray) -> np.ndarray:
    """PySlowFast's pyav_decode: seek before the clip, convert every decoded frame of its span to RGB, then
    pick the clip's frames (temporal_sampling)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        pts_per_frame = 1 / (stream.average_rate * stream.time_base)
        container.seek(int(frames[0] * pts_per_frame), backward=True, any_frame=False, stream=stream)
        span = {}
        for frame in container.decode(stream):
            index = round(frame.pts / pts_per_frame)
            if index >= frames[0]:
                span[index] = frame.to_rgb().to_ndarray()
            if index >= frames[-1]:
                break
    last = max(span)
    return np.stack([span[min(int(i), last)] for i in frames])


def decode_decord(path: str | Path, frames: np.ndarray) -> np.ndarray:
    """MMAction2's DecordInit + DecordDecode."""
    import decord

    return decord.VideoReader(str(path), num_threads=1).get_batch(frames.tolist()).asnumpy()


def torch_augment(clip: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """PySlowFast's training transform: normalise, random short-side scale, random crop, flip -> C,T,H,W."""
    video = (torch.from_numpy(clip).float() / 255 - MEAN) / STD  # [T, H, W, C]
    video = video.permute(0, 3, 1, 2)  # [T, C, H, W]
    height, width = video.shape[-2:]
    side = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
    size = (side, int(width * side / height)) if height <= width else (int(height * side / width), side)
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    y = int(rng.integers(0, video.shape[-2] - CROP + 1))
    x = int(rng.integers(0, video.shape[-1] - CROP + 1))
    video = video[..., y:y + CROP, x:x + CROP]
    if rng.random() < 0.5:
        video = video.flip(-1)
    return video.permute(1, 0, 2, 3).contiguous()  # [C, T, H, W]


class PeerDataset(torch.utils.data.Dataset):
    def __init__(self, clips: list[tuple[str, np.ndarray]], decode: Callable):
        self.clips, self.decode = clips, decode

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        path, frames = self.clips[i]
        return torch_augment(self.decode(path, frames), np.random.default_rng(i))


def peer_batches(clips, decode: Callable, workers: int) -> Iterable:
    return torch.utils.data.DataLoader(PeerDataset(clips, decode), batch_size=BATCH, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=2)


# ---------------------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Rate:
    clips_per_s: float  # wall clock
    cpu_ms_per_clip: float  # CPU time of every process of the loader (threads included) per clip


class CpuClock:
    """CPU seconds (user + system, all threads) used by a set of processes, read from /proc."""

    def __init__(self, pids: Iterable[int]):
        self.pids = list(pids)
        self.start = self.read()

    def read(self) -> float:
        total = 0.0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return total / os.sysconf("SC_CLK_TCK")

    def elapsed(self) -> float:
        return self.read() - self.start


def steady_rate(batches: Iterable, warmup: int, measured: int) -> Rate:
    """Rate over `measured` batches after `warmup` untimed ones (DataLoader workers are counted in CPU time)."""
    iterator = iter(batches)
    for _ in range(warmup):
        next(iterator)
    workers = [w.pid for w in getattr(iterator, "_workers", [])]
    clock, start = CpuClock([os.getpid(), *workers]), time.perf_counter()
    for _ in range(measured):
        next(iterator)
    clips = measured * BATCH
    return Rate(clips / (time.perf_counter() - start), 1000 * clock.elapsed() / clips)


def dalitrain_batches(videos: list[Path], decoder: str, cores: int, steps: int, workdir: Path,
                      augment: Optional[AugmentConfig] = None, num_samples: int = 1, num_frames: int = NUM_FRAMES,
                      stride: int = STRIDE):
    manifest = workdir / "bench.txt"
    manifest.write_text("".join(f"{p.resolve()} 0\n" for p in videos))
    data = DataConfig(datasets=[DatasetConfig(name="bench", manifest=str(manifest), num_classes=1)],
                      batch_size=BATCH, num_frames=num_frames, stride=stride, short_side=list(SHORT_SIDE),
                      crop_size=CROP, epoch_size=steps * BATCH, device="cpu", decoder=decoder, num_threads=cores,
                      mean=[MEAN] * 3, std=[STD] * 3, augment=augment or AugmentConfig(), num_samples=num_samples)
    return train_loader(data, seed=0)


def loader_clips(loader: VideoLoader) -> list[tuple[str, np.ndarray]]:
    """(path, frame indices) of every clip of the loader's epoch: the peers and the ceilings decode these, so
    that every loader does the same work (videos differ in size and clips in their distance to a key frame)."""
    return [(str(loader.datasets[s.dataset].videos[s.video].path), s.frames) for batch in loader.plan for s in batch]


def _decode_only(job: tuple[str, str, np.ndarray]) -> tuple:
    name, path, frames = job
    return CEILING_DECODERS[name](path, frames).shape


CEILING_DECODERS: dict[str, Callable] = {"pyav": decode_pyav, "torchcodec": decode_torchcodec,
                                         "decord": decode_decord}
QUICK_CEILING = ("pyav", "torchcodec")  # --quick keeps the two fastest seen so far, to finish within a minute


def _load_decoder(name: str, path: str, frames: np.ndarray) -> None:
    """Worker initialiser: load the decoder's libraries and decode once, so that no start-up cost is timed.
    One torch thread per worker, as DataLoader workers have: torchcodec runs torch ops on its frames, and with
    a thread pool per process the idle pool threads spin (61 instead of 42 CPU ms per clip, measured)."""
    torch.set_num_threads(1)
    _decode_only((name, path, frames))


def ceiling_rate(name: str, clips, cores: int, warmup: int) -> Rate:
    # spawn, not fork: this process already runs DALI and torch threads, and a forked copy of their locks hangs
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn"), initializer=_load_decoder,
                             initargs=(name, *clips[0])) as pool:
        list(pool.map(_decode_only, [(name, p, f) for p, f in clips[:warmup * cores]]))
        timed = [(name, p, f) for p, f in clips[warmup * cores:]]
        clock, start = CpuClock([os.getpid(), *pool._processes]), time.perf_counter()
        list(pool.map(_decode_only, timed))
        return Rate(len(timed) / (time.perf_counter() - start), 1000 * clock.elapsed() / len(timed))


def missing_library(name: str) -> Optional[str]:
    """Why a peer cannot run here, or None."""
    if name == "torchcodec" and not torchcodec_available():
        return "torchcodec cannot load (pip install 'torchcodec==0.13.*' and the system FFmpeg libraries)"
    if name == "decord":
        try:
            import decord  # noqa: F401
        except ImportError:
            return "decord is not installed (pip install decord)"
    return None


# ---------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    cores = args.cores or os.cpu_count() or 1
    # warm-up: until the loaders that run ahead (ours by PREFETCH batches, DataLoader's by 2 per worker) have
    # used up the head start they got while the first batch waited for start-up; with 2 warm-up batches
    # --quick timed work partly done before the clock started and read above the decode-only ceiling
    # --quick times the same clips as each round of the full mode (the plan is seeded), one round: the augmented
    # rows draw their RandAugment ops per clip, and 4 batches did not average their cost (27% off the full mode)
    warmup, measured, rounds = (4, 8, 1) if args.quick else (4, 8, 3)
    steps = warmup + measured
    videos = corpus_videos(args.corpus)
    default = resolve_decoder("default", "cpu")
    workdir = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    planner = dalitrain_batches(videos, default, cores, steps, workdir)
    clips = loader_clips(planner)
    planner.close()
    candidates = [(f"dalitrain ({d})", "dalitrain", d, lambda d=d: steady_rate(
        dalitrain_batches(videos, d, cores, steps, workdir), warmup, measured))
        for d in ([default] if args.quick else CPU_DECODERS)]
    # the default loader with the released augmentation (its decoder: the default for k samples per clip)
    augmented = {k: resolve_decoder("default", "cpu", k) for k in (1, 2)}
    candidates += [(f"dalitrain ({d}) + released augment{', 2 samples' if k > 1 else ''}", "augment", d,
                    lambda k=k: steady_rate(dalitrain_batches(videos, "default", cores, steps, workdir,
                                                              RELEASED_AUGMENT, k), warmup, measured))
                   for k, d in augmented.items()]
    candidates += [(name, "peer", library, lambda d=decode: steady_rate(
        peer_batches(clips, d, cores), warmup, measured))
        for name, library, decode in (("PySlowFast (pyav)", "pyav", decode_pyslowfast),
                                      ("MMAction2 (decord)", "decord", decode_decord),
                                      ("DataLoader (torchcodec)", "torchcodec", decode_torchcodec))]
    candidates += [(f"decode only ({name})", "ceiling", name, lambda n=name: ceiling_rate(
        n, clips, cores, warmup)) for name in (QUICK_CEILING if args.quick else CEILING_DECODERS)]

    why_not = {name: missing_library(library) for name, _, library, _ in candidates}
    skipped = [f"{kind} {name}: skipped, {why_not[name]}" for name, kind, *_ in candidates if why_not[name]]
    for line in skipped:
        print(line, flush=True)
    runnable = [c for c in candidates if not why_not[c[0]]]
    # rounds interleave the loaders, so a burst of load from other processes hits them all alike; the best
    # round of each counts (the one least disturbed)
    rates: dict[str, list[Rate]] = {name: [] for name, *_ in runnable}
    for round_ in range(rounds):
        for name, kind, _, measure in runnable:
            rates[name].append(measure())
            rate = rates[name][-1]
            print(f"  round {round_ + 1}/{rounds} {kind:9s} {name:32s} {rate.clips_per_s:7.1f} clips/s "
                  f"{rate.cpu_ms_per_clip:7.1f} CPU ms/clip", flush=True)
    shutil.rmtree(workdir)
    records = []
    for name, kind, *_ in runnable:
        cpu_ms = min(r.cpu_ms_per_clip for r in rates[name])
        records.append({"name": name, "kind": kind, "clips_per_s": max(r.clips_per_s for r in rates[name]),
                        "cpu_ms_per_clip": cpu_ms, "cpu_bound_clips_per_s": 1000 * cores / cpu_ms,
                        "rounds": [r.__dict__ for r in rates[name]]})
    ours = next(r for r in records if r["name"] == f"dalitrain ({default})")
    result = {"cores": cores, "videos": len(videos), "clips_timed": measured * BATCH, "rounds": rounds,
              "default": ours["name"], "records": records, "skipped": skipped}
    for prefix, key in (("", "clips_per_s"), ("cpu_", "cpu_bound_clips_per_s")):
        best_peer = max((r for r in records if r["kind"] == "peer"), key=lambda r: r[key])
        ceiling = max((r for r in records if r["kind"] == "ceiling"), key=lambda r: r[key])
        for r in records:
            r[f"{prefix}ratio_to_best_peer"] = r[key] / best_peer[key]
            r[f"{prefix}ratio_to_ceiling"] = r[key] / ceiling[key]
        result.update({f"{prefix}best_peer": best_peer["name"], f"{prefix}ceiling": ceiling["name"],
                       f"{prefix}ratio_to_best_peer": ours[f"{prefix}ratio_to_best_peer"],
                       f"{prefix}ratio_to_ceiling": ours[f"{prefix}ratio_to_ceiling"]})
    augmented = [r for r in records if r["kind"] == "augment"]
    if len(augmented) == 2:
        once, twice = augmented
        result["repeated_speedup"] = twice["clips_per_s"] / once["clips_per_s"]
        result["cpu_repeated_speedup"] = once["cpu_ms_per_clip"] / twice["cpu_ms_per_clip"]
        result["augment_cpu_share"] = 1 - ours["cpu_ms_per_clip"] / once["cpu_ms_per_clip"]
    return result


def print_table(result: dict) -> None:
    """Wall-clock rates, and CPU-bound rates (cores / CPU time per clip: what each loader reaches when it has
    the cores to itself and keeps them busy), which other processes on a shared machine disturb far less."""
    print(f"\nrecipe {NUM_FRAMES}x{STRIDE}, short side {list(SHORT_SIDE)}, crop {CROP}, batch {BATCH}; "
          f"{result['cores']} CPU cores, {result['videos']} videos, {result['clips_timed']} clips timed per round, "
          f"best of {result['rounds']} interleaved rounds")
    print(f"{'loader (augment rows: samples)':52s} {'clips/s':>8s} {'/best peer':>10s} {'/ceiling':>9s} "
          f"{'CPU ms/clip':>12s} {'CPU-bound clips/s':>18s} {'/best peer':>10s} {'/ceiling':>9s}")
    for r in result["records"]:
        mark = "  <- default" if r["name"] == result["default"] else ""
        print(f"{r['name']:52s} {r['clips_per_s']:8.1f} {r['ratio_to_best_peer']:9.2f}x {r['ratio_to_ceiling']:8.2f}x "
              f"{r['cpu_ms_per_clip']:12.1f} {r['cpu_bound_clips_per_s']:18.1f} {r['cpu_ratio_to_best_peer']:9.2f}x "
              f"{r['cpu_ratio_to_ceiling']:8.2f}x{mark}")
    # CPU time is counted over the timed window; loaders that run ahead (DataLoader workers prefetch) make it
    # approximate for windows as short as --quick's, so only full runs summarise it
    for prefix, what in (("", "wall clock"), ("cpu_", "CPU-bound"))[:1 if result["rounds"] == 1 else 2]:
        print(f"{what}: default {result['default']} = {result[prefix + 'ratio_to_best_peer']:.2f}x the best peer "
              f"({result[prefix + 'best_peer']}; target >= 1.5), {result[prefix + 'ratio_to_ceiling']:.2f} of the "
              f"ceiling ({result[prefix + 'ceiling']}; target >= 0.9)")
    if "repeated_speedup" in result:
        print(f"repeated augmentation: 2 samples per clip give {result['repeated_speedup']:.2f}x the samples/s of 1 "
              f"({result['cpu_repeated_speedup']:.2f}x in CPU time per sample; target >= 1.8); the released "
              f"augmentation takes {100 * result['augment_cpu_share']:.0f}% of the loader's CPU time per sample "
              "(target <= 15%)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of 3, only the default strategy, "
                        "PyAV and torchcodec ceilings (about a minute once the corpus is cached)")
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--png", help="chart clips/s per loader here, the ceiling and the best peer marked")
    parser.add_argument("--corpus", help="folder of bench videos (dalitrain synth --preset bench)")
    parser.add_argument("--cores", type=int, help="CPU cores every loader may use (default: all)")
    parser.add_argument("--scaling", action="store_true", help="instead: the default loader's CPU ms per clip "
                        "against clip frames, source resolution and decode workers, and the cores a GPU needs")
    parser.add_argument("--gpu-json", help="with --scaling: `dalitrain bench gpu --json` output, for the cores "
                        "needed at the rate that GPU trains")
    parser.add_argument("--decoder", default="default", help="with --scaling: the loader's decode strategy "
                        "(data.decoder; default: the fastest available)")
    args = parser.parse_args(argv)
    if args.scaling:
        return run_scaling(args)
    result = run(args)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        save(pipeline_chart(result), args.png)
    return 0


def run_scaling(args: argparse.Namespace) -> int:
    cores = args.cores or os.cpu_count() or 1
    warmup, measured = (2, 4) if args.quick else (4, 8)
    result = pipeline_scaling.run(corpus_videos(args.corpus), cores, CACHE, warmup, measured, args.decoder)
    lines = pipeline_scaling.cores_per_gpu(result, args.gpu_json)
    pipeline_scaling.print_table(result, lines)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "cores_per_gpu": lines}, indent=2) + "\n")
    return 0


def pipeline_chart(result: dict):
    records = result["records"]
    best = {kind: max(r["clips_per_s"] for r in records if r["kind"] == kind) for kind in ("peer", "ceiling")}
    # the augmented rows' batches hold samples (2 per clip in the repeated row): their bars count samples
    return bar_chart([r["name"] + (" (default)" if r["name"] == result["default"] else "")
                      + (" [samples/s]" if r["kind"] == "augment" else "") for r in records],
                     {"clips/s (best round)": [r["clips_per_s"] for r in records]},
                     title=f"training clips/s, {NUM_FRAMES}x{STRIDE} clips, crop {CROP}, batch {BATCH}, "
                           f"{result['cores']} cores",
                     ylabel="clips/s (augmented rows: samples/s)",
                     lines={"best decode-only ceiling": best["ceiling"], "best peer": best["peer"]})


if __name__ == "__main__":
    raise SystemExit(main())
