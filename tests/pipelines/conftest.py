"""Fixtures of tiny coded videos (tests/data/coded.py): their pixels say which frame they are."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.coded import coded_frames, write_vp9


@pytest.fixture(scope="session")
def coded_video(tmp_path_factory) -> Path:
    """30 flat-coded frames, 64x48, key frame every 10."""
    return write_vp9(tmp_path_factory.mktemp("videos") / "coded.webm", coded_frames(30))


def make_corpus(root: Path) -> dict:
    """Four tiny datasets as the config expects them: manifests under `root`, videos under `root/<name>`.

    clipset: flat-coded, `clip` sampling; ssv2: flat-coded, `uniform`, no flip; trimmed: flat-coded, `segment`
    (CSV frames 8..20); ramps: ramp-patterned, `clip`, flip allowed. Returns DatasetConfig keyword dicts.
    """
    specs = {"clipset": (5, 30, 0), "ssv2": (3, 30, 0), "trimmed": (2, 30, 0), "ramps": (4, 20, 120)}
    datasets = {}
    for name, (count, frames, ramp) in specs.items():
        for i in range(count):
            write_vp9(root / name / f"v{i}.webm", coded_frames(frames, ramp=ramp))
        if name == "trimmed":
            lines = ["path,label,start_frame,end_frame"] + [f"v{i}.webm,{i % 2},8,20" for i in range(count)]
        else:
            lines = [f"v{i}.webm {i % 2}" for i in range(count)]
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
        datasets[name] = dict(name=name, manifest=f"{name}.txt", val_manifest=f"{name}.txt", root=name,
                              num_classes=2, sampling={"ssv2": "uniform", "trimmed": "segment"}.get(name, "clip"),
                              flip=name != "ssv2")
    return datasets


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)
