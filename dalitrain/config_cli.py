"""`dalitrain config FILE [KEY=VALUE ...]`: print the resolved, type-checked config."""
from __future__ import annotations

import argparse

from dalitrain.config import dump_config, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=8")


def run(args: argparse.Namespace) -> int:
    print(dump_config(load_config(args.config, args.overrides)), end="")
    return 0
