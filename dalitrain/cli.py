"""The `dalitrain` command. Each subcommand lives in its own module, imported only when it runs (so that
`dalitrain config` does not pay for importing DALI or Triton); a module provides
`add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from dalitrain.errors import DalitrainError

SUBCOMMANDS = {
    "synth": ("dalitrain.data.synth_cli", "generate the built-in synthetic multi-dataset corpus"),
    "scan": ("dalitrain.data.scan", "probe every video of manifests; write a JSON index with a quarantine"),
    "prepare": ("dalitrain.data.prepare", "transcode a dataset for the device that will decode it"),
    "config": ("dalitrain.config_cli", "print the resolved config of a YAML file with overrides"),
    "info": ("dalitrain.models.info", "parameters, GMACs and stage shapes of a model"),
    "bench": ("dalitrain.benchmarks.run", "run a benchmark script (pipeline, model, kernels)"),
    "train": ("dalitrain.train", "train from a YAML config (torchrun for several processes)"),
    "relations": ("dalitrain.engine.relations", "cross-dataset class relations learned by the projections"),
    "plot": ("dalitrain.figures", "a run's training curves (loss terms, lr, clips/s, top-1) as a PNG"),
    "demo": ("dalitrain.demo", "synthetic corpus -> a recipe (MultiTrain, co-finetuning) on the CPU -> "
                                "evaluation and report"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="dalitrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except DalitrainError as err:  # expected: one line; anything else keeps its traceback (dalitrain.errors)
        print(f"dalitrain {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
