"""`dalitrain train` with the released augmentation and repeated samples, SIGKILLed and resumed: the losses and the
final weights equal the uninterrupted run's (every augmentation draw is replayed on resume)."""
import signal
from pathlib import Path

import torch
import yaml

from tests.pipelines.conftest import make_corpus
from tests.test_stages import losses, run as train  # `dalitrain train CONFIG`, optionally SIGKILLed at a batch


def config(root: Path) -> dict:
    datasets = make_corpus(root / "corpus")
    return {
        "method": "cofinetune",
        "data": {"base_dir": str(root / "corpus"), "datasets": [datasets["ramps"], datasets["ssv2"]],
                 "batch_size": 4, "num_samples": 2, "num_frames": 4, "stride": 2, "crop_size": 32, "device": "cpu",
                 "mixing": "mixed",
                 "augment": {"crop": "resized", "color_jitter": 0.4, "rand_augment": "rand-m7-n4-mstd0.5-inc1",
                             "erase_prob": 0.5}},
        "model": {"arch": "vivit_fe_tiny", "head": "linear", "drop_path_rate": 0.0},
        "optim": {"lr": 1e-4, "warmup_epochs": 0.0},
        "train": {"epochs": 2, "log_every": 1, "bf16": False, "keep_last": 4},
        "eval": {"temporal_views": 1, "spatial_views": 1, "short_side": 32, "batch_size": 4},
    }


def test_killed_run_with_repeated_augmented_samples_resumes_to_the_uninterrupted_losses(tmp_path):
    config_file = tmp_path / "augmented.yaml"
    config_file.write_text(yaml.safe_dump(config(tmp_path)))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = train(config_file, whole)
    assert done.returncode == 0, done.stderr[-3000:]
    first = train(config_file, killed, 4, 1, 2)  # epoch 2's third batch: after the epoch-1 checkpoint
    assert first.returncode == -signal.SIGKILL
    second = train(config_file, killed)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout
    expected, got = losses(whole), losses(killed)
    assert len(expected) == 2 * 4 and got == expected  # 7 videos: 4 steps of 2 clips (4 samples) an epoch
    last = f"step-{max(expected):08d}.pt"
    final_whole = torch.load(whole / "checkpoints" / last, weights_only=True)["model"]
    final_killed = torch.load(killed / "checkpoints" / last, weights_only=True)["model"]
    assert all(torch.equal(final_whole[k], final_killed[k]) for k in final_whole)
