"""`dalitrain bench NAME [args]`: run `benchmarks/bench_NAME.py` (installed as dalitrain.benchmarks)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil

import dalitrain.benchmarks as package
from dalitrain.errors import UsageError


def available() -> list[str]:
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(package.__path__)
                  if m.name.startswith("bench_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of: {', '.join(available())}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark (e.g. --quick --json F)")


def run(args: argparse.Namespace) -> int:
    if args.name not in available():
        raise UsageError(f"unknown benchmark {args.name!r} (available: {', '.join(available())})")
    module = importlib.import_module(f"dalitrain.benchmarks.bench_{args.name}")
    return int(module.main(args.args) or 0)
