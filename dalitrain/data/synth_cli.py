"""`dalitrain synth --out DIR [--preset demo|bench|tiny|ava_demo|...] [--seed N] [--codec vp9|vp8|mjpeg] [--workers N]`:
the classification corpus, or (`ava_*` presets) the synthetic action-localisation dataset (`synth_ava.py`)."""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from dalitrain.data.synth import PRESETS, generate_corpus
from dalitrain.data.synth_ava import PRESETS as AVA_PRESETS
from dalitrain.data.synth_ava import generate_ava
from dalitrain.data.synth_render import CODECS
from dalitrain.progress import interactive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (rerunning finishes an interrupted corpus)")
    parser.add_argument("--preset", choices=list(PRESETS) + list(AVA_PRESETS), default="demo",
                        help="demo: small and quick; bench: 10 s 25 fps videos at short side 256; tiny: for tests; "
                             "ava_demo / ava_tiny: action localisation in AVA's formats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", choices=list(CODECS), default="vp9")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.preset in AVA_PRESETS:
        summary = generate_ava(args.out, preset=args.preset, seed=args.seed)
        print(f"AVA-format dataset in {args.out} ({args.preset}, seed {args.seed}): {summary['videos']['train']} "
              f"train and {summary['videos']['val']} val videos; training boxes per action {summary['train_counts']} "
              f"after {time.perf_counter() - started:.1f} s")
        return 0
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if interactive():  # a bar for a watcher, a line per tenth for a log
            bar = bar or tqdm(total=total, desc="synth", unit="video", file=sys.stderr, leave=False)
            bar.update(done - bar.n)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"  {done}/{total} videos ({time.perf_counter() - started:.0f} s)", flush=True)

    summary = generate_corpus(args.out, preset=args.preset, seed=args.seed, codec=args.codec,
                              workers=args.workers, progress=report)
    if bar is not None:
        bar.close()
    for name, info in summary.items():
        print(f"{name:18s} {len(info['classes']):3d} classes  {info['train']:4d} train  {info['val']:4d} val")
    print(f"corpus in {args.out} ({args.preset}, seed {args.seed}, {args.codec}) "
          f"after {time.perf_counter() - started:.1f} s")
    return 0
