"""Runs `dalitrain train CONFIG` (a curriculum) as a script, optionally SIGKILLed while a given stage fetches a given
batch, to test resuming across and inside stages.

usage: stages_worker.py CONFIG [--kill-at FRAMES EPOCH STEP] [KEY=VALUE ...]
The stage is told by its clip length FRAMES; EPOCH and STEP are 0-based: the kill comes as that stage's loader
hands out that batch of that epoch.
"""
import argparse
import os
import signal
import sys

import dalitrain.train as train_module
from dalitrain.train import main as train_main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--kill-at", nargs=3, type=int, default=None, metavar=("FRAMES", "EPOCH", "STEP"))
    args, overrides = parser.parse_known_args()  # the rest: KEY=VALUE overrides
    if args.kill_at:
        frames, kill_epoch, kill_step = args.kill_at
        real_loader = train_module.train_loader

        def killing_loader(data, *, epoch, start_step, **kwargs):
            loader = real_loader(data, epoch=epoch, start_step=start_step, **kwargs)
            if data.num_frames != frames or epoch != kill_epoch:
                return loader
            return KillingLoader(loader, start_step, kill_step)

        train_module.train_loader = killing_loader
    sys.exit(train_main([args.config, *overrides]))


class KillingLoader:
    def __init__(self, loader, start_step: int, kill_step: int):
        self.loader, self.step, self.kill_step = loader, start_step, kill_step

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.step == self.kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
            self.step += 1
            yield batch

    def close(self) -> None:
        self.loader.close()


if __name__ == "__main__":
    main()
