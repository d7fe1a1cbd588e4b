"""`dalitrain bench pipeline --scaling [--decoder D]`: how the loader's CPU cost per clip grows with clip length, source
resolution and decode workers, and from it the CPU cores a GPU needs to be fed.

Rows (each the loader's steady state after its warm-up, its CPU time over every thread, per clip):
- clip frames 8, 16, 32 at the strides of the recipes that use them (SlowFast 8x8, MViTv2-S 16x4, MViTv2-B 32x3), on
  the bench corpus (short side 256, the usual pre-resized Kinetics);
- source resolution: 16x4 clips of the same VIDEOS_PER_VARIANT videos (the corpus's shortest) transcoded alike to
  each short side (`dalitrain prepare --short-side 256 | 480 | 720`, VP9, a key frame a second; cached next to the
  bench corpus), so that only the resolution differs between these rows;
- decode workers 1 and 2 (`data.num_threads`) at 16x4 and 256p, with the wall-clock clips/s as well.
Every clip is augmented to a 224 crop as in `bench pipeline`, so the resolution rows measure decoding more pixels,
not producing more.

Cores per GPU = clips/s the GPU trains x CPU seconds per clip: printed for MViTv2-B 32x3 at MultiTrain's 9.4 clips/s
per V100 (paper, 8 V100s), scaled to each source resolution by the 16x4 resolution rows, and for MViTv2-S 16x4 at the
clips/s `dalitrain bench gpu --json F` measured (`--gpu-json F`).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from dalitrain.data.prepare import prepare

RECIPES = ((8, 8), (16, 4), (32, 3))  # (frames, stride)
RESOLUTIONS = (256, 480, 720)  # short sides of the transcoded variants (the bench corpus's is 256)
VIDEOS_PER_VARIANT = 12
MULTITRAIN_CLIPS_PER_S = 9.4  # MViTv2-B 32x3 training clips/s per V100 (MultiTrain, anchors.md)
KEY_FRAME_INTERVAL = 25  # the bench corpus's: a key frame a second at 25 fps


def resolution_variant(videos: list[Path], short_side: int, cache: Path) -> list[Path]:
    """The shortest VIDEOS_PER_VARIANT videos transcoded to `short_side` (once; later runs reuse them)."""
    chosen = sorted(videos, key=lambda p: p.stat().st_size)[:VIDEOS_PER_VARIANT]
    out = cache / f"corpus-{short_side}p"
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "sources.txt"
    manifest.write_text("".join(f"{p.resolve()} 0\n" for p in chosen))
    print(f"scaling: {len(chosen)} videos at short side {short_side} in {out} (transcoded on first use)", flush=True)
    new_manifest, outcome = prepare(manifest, out / "videos", "vp9", short_side=short_side, gop=KEY_FRAME_INTERVAL)
    failed = {source: why for source, why in outcome.items() if why not in (None, "skipped")}
    if failed:
        raise SystemExit(f"{new_manifest}: {len(failed)} videos failed to transcode, e.g. {next(iter(failed.items()))}")
    return [new_manifest.parent / line.split()[0] for line in new_manifest.read_text().splitlines() if line.strip()]


def run(videos: list[Path], cores: int, cache: Path, warmup: int, measured: int, decoder: str = "default") -> dict:
    from dalitrain.benchmarks.bench_pipeline import dalitrain_batches, steady_rate
    from dalitrain.pipelines.loader import resolve_decoder

    workdir = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    steps = warmup + measured

    def measure(label: str, corpus: list[Path], frames: int, stride: int, workers: int, **row) -> dict:
        rate = steady_rate(dalitrain_batches(corpus, decoder, workers, steps, workdir, num_frames=frames,
                                             stride=stride), warmup, measured)
        record = dict(row, frames=frames, stride=stride, workers=workers, clips_per_s=rate.clips_per_s,
                      cpu_ms_per_clip=rate.cpu_ms_per_clip)
        print(f"  {label:28s} {rate.clips_per_s:7.1f} clips/s {rate.cpu_ms_per_clip:7.1f} CPU ms/clip", flush=True)
        return record

    rows = {"frames": [measure(f"{f}x{s}, 256p, {cores} workers", videos, f, s, cores, short_side=256)
                       for f, s in RECIPES]}
    rows["resolution"] = [measure(f"16x4, {side}p (transcoded), {cores} workers",
                                  resolution_variant(videos, side, cache), 16, 4, cores, short_side=side)
                          for side in RESOLUTIONS]
    base = next(r for r in rows["frames"] if (r["frames"], r["stride"]) == (16, 4))  # 16x4 at `cores` workers
    rows["workers"] = [base if w == cores else measure(f"16x4, 256p, {w} worker{'s' if w > 1 else ''}", videos, 16,
                                                       4, w, short_side=256) for w in sorted({1, cores})]
    return {"cores": cores, "decoder": resolve_decoder(decoder, "cpu"), "rows": rows}


def cores_per_gpu(result: dict, gpu_json: Optional[str]) -> list[str]:
    """The lines saying how many cores feed a GPU, from the measured CPU ms per clip."""
    by_frames = {r["frames"]: r["cpu_ms_per_clip"] for r in result["rows"]["frames"]}
    by_side = {r["short_side"]: r["cpu_ms_per_clip"] for r in result["rows"]["resolution"]}
    # 32x3 at 256p measured on the bench corpus, scaled by the transcoded variants' cost relative to their 256p
    per_side = ", ".join(f"{MULTITRAIN_CLIPS_PER_S * by_frames[32] * by_side[s] / by_side[256] / 1000:.1f} at {s}p"
                         for s in sorted(by_side))
    lines = [f"cores per GPU to feed MViTv2-B 32x3 at MultiTrain's {MULTITRAIN_CLIPS_PER_S} clips/s per V100: "
             f"{per_side} (source short side)"]
    if gpu_json is None:
        lines.append("cores per GPU at the rate this GPU trains: run `dalitrain bench gpu --json F` on it, then "
                     "pass --gpu-json F")
        return lines
    steps = json.loads(Path(gpu_json).read_text()).get("train.step", {}).get("rows", [])
    plain = next((r for r in steps if not r.get("checkpointing") and r.get("clips_per_s")), None)
    if plain is None:
        raise SystemExit(f"{gpu_json}: no train.step result without checkpointing (bench gpu's JSON expected)")
    lines.append(f"cores per GPU to feed MViTv2-S 16x4 at {plain['clips_per_s']:.1f} clips/s ({gpu_json}): "
                 f"{plain['clips_per_s'] * by_frames[16] / 1000:.1f} at 256p")
    return lines


def print_table(result: dict, lines: list[str]) -> None:
    print(f"\nCPU cost of dalitrain's loader ({result['decoder']}), 224 crop, batch 8, {result['cores']} cores")
    print(f"{'varied':10s} {'clip':>6s} {'source':>7s} {'workers':>8s} {'clips/s':>8s} {'CPU ms/clip':>12s}")
    for varied, rows in result["rows"].items():
        for r in rows:
            print(f"{varied:10s} {r['frames']:>3d}x{r['stride']:<2d} {r['short_side']:>6d}p {r['workers']:>8d} "
                  f"{r['clips_per_s']:8.1f} {r['cpu_ms_per_clip']:12.1f}")
    for line in lines:
        print(line)
