import subprocess
import sys
from pathlib import Path

import pytest

from dalitrain.config import ConfigError, load_config, save_config

MINIMAL = """
data:
  datasets:
    - {name: a, manifest: a.txt, num_classes: 3}
    - {name: b, manifest: b.csv, num_classes: 5, sampling: uniform, flip: false}
optim:
  lr: 0.001
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_loads_typed_sections(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert [d.name for d in cfg.data.datasets] == ["a", "b"]
    assert cfg.data.datasets[1].sampling == "uniform" and cfg.data.datasets[1].flip is False
    assert cfg.data.datasets[0].flip is True


@pytest.mark.parametrize("text, key, reason", [
    (MINIMAL + "  lrr: 3\n", "optim.lrr", "unknown key"),
    (MINIMAL.replace("lr: 0.001", "lr: fast"), "optim.lr", "expected a number"),
    (MINIMAL.replace("num_classes: 3", "num_classes: 3.5"), "data.datasets.0.num_classes", "expected an integer"),
    (MINIMAL.replace("sampling: uniform", "sampling: random"), "data.datasets.1.sampling", "must be one of"),
    (MINIMAL.replace("manifest: a.txt, ", ""), "data.datasets.0.manifest", "required key is missing"),
    ("optim: {lr: 1.0}\n", "data", "required key is missing"),
    (MINIMAL + "train:\n  epochs: true\n", "train.epochs", "expected an integer"),
    (MINIMAL + "method: vicreg\n", "method", "must be one of 'multitrain', 'cofinetune'"),
    (MINIMAL + "  name: lamb\n", "optim.name", "must be one of 'adamw', 'sgd'"),
    (MINIMAL.replace("    - {name: b, manifest: b.csv, num_classes: 5, sampling: uniform, flip: false}\n",
                     "  mixing: per_batch\n"), "data.mixing", "per_batch picks one dataset per batch, but data.datasets has 1"),
    (MINIMAL.replace("    - {name: b, manifest: b.csv, num_classes: 5, sampling: uniform, flip: false}\n", ""),
     "loss.projection", "released projects between datasets, but data.datasets has 1 (use none)"),
    (MINIMAL + "loss: {projection: none, projection_sparsity: 0.1}\n", "loss.projection_sparsity",
     "regularises the projections, but loss.projection is none"),
    (MINIMAL + "loss: {projection: true}\n", "loss.projection", "must be one of 'none', 'paper', 'released'"),
    (MINIMAL + "loss: {uncertainty: sigma}\n", "loss.uncertainty", "must be one of 'none', 'log_sigma', 'sigma_sq'"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, sampling: keyframe"), "data.datasets.1.labelmap",
     "needs its label map"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, labelmap: m.pbtxt"), "data.datasets.1.sampling",
     "samples keyframe clips (sampling: keyframe), got clip"),
    (MINIMAL.replace("sampling: uniform", "sampling: keyframe"), "data.datasets.1.sampling",
     "keyframe clips are for task: localisation"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, sampling: keyframe, labelmap: m.pbtxt"), "method",
     "a localisation dataset trains with method: cofinetune"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, sampling: keyframe, labelmap: m.pbtxt, "
                     "eval_boxes: proposals") + "method: cofinetune\n", "data.datasets.1.eval_boxes",
     "proposals, but val_proposals is not set"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, sampling: keyframe, labelmap: m.pbtxt, "
                     "train_boxes: proposals") + "method: cofinetune\n", "data.datasets.1.train_boxes",
     "proposals, but proposals is not set"),
    (MINIMAL.replace("{name: a, manifest: a.txt, num_classes: 3}", "{name: a, manifest: a.csv, num_classes: 3, "
                     "task: localisation, sampling: keyframe, labelmap: m.pbtxt}")
     .replace("sampling: uniform", "task: localisation, sampling: keyframe, labelmap: m.pbtxt")
     + "method: cofinetune\n", "data.datasets", "one localisation dataset per run (one box head), got 2"),
    (MINIMAL.replace("optim:", "  num_samples: 3\noptim:"), "data.num_samples",
     "3 must be >= 1 and divide data.batch_size (8)"),
    (MINIMAL.replace("optim:", "  augment: {rand_augment: rand-m7-x4}\noptim:"), "data.augment.rand_augment",
     "cannot read 'x4'"),
    (MINIMAL.replace("optim:", "  augment: {area: [0.5, 0.2]}\noptim:"), "data.augment.area",
     "[0.5, 0.2] is not an increasing range"),
    (MINIMAL.replace("sampling: uniform", "task: localisation, sampling: keyframe, labelmap: m.pbtxt")
     .replace("optim:", "  augment: {rand_augment: rand-m9-n2}\noptim:") + "method: cofinetune\n",
     "data.augment.rand_augment", "would move the persons away from their boxes"),
])
def test_bad_file_names_file_and_key(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert reason in message


def test_overrides_are_type_checked(tmp_path):
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["optim.lr=3e-4", "data.batch_size=4", "data.datasets.1.weight=2"])
    assert cfg.optim.lr == 3e-4 and cfg.data.batch_size == 4 and cfg.data.datasets[1].weight == 2.0
    for bad, key in [("optim.lrr=1", "optim.lrr"), ("data.batch_size=big", "data.batch_size"),
                     ("data.datasets.7.weight=1", "data.datasets.7"), ("optim.lr", "'optim.lr'"),
                     ("optim.lr.x=1", "optim.lr.x")]:
        with pytest.raises(ConfigError) as info:
            load_config(path, [bad])
        assert key in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_architecture_options_come_from_the_file_and_the_command_line(tmp_path):
    path = write(tmp_path, MINIMAL + "model:\n  arch_options: {stem: patch}\n")
    assert load_config(path).model.arch_options == {"stem": "patch"}
    cfg = load_config(path, ["model.arch_options.temporal_depth=2", "method=cofinetune", "optim.name=sgd"])
    assert cfg.model.arch_options == {"stem": "patch", "temporal_depth": 2}
    assert cfg.method == "cofinetune" and cfg.optim.name == "sgd"
    with pytest.raises(ConfigError, match="model.arch_options.stem: model.arch_options entries have no sub-keys"):
        load_config(path, ["model.arch_options.stem.x=1"])


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "data:\n  datasets: [\n")
    with pytest.raises(ConfigError, match=rf"{path}: line \d+ is not valid YAML"):
        load_config(path)


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["train.seed=7"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(tmp_path / "out" / "config.yaml") == cfg


def test_shipped_configs_load():
    for path in sorted(Path(__file__).parents[1].glob("configs/*.yaml")):
        load_config(path)


def test_cli_config_prints_and_fails_in_one_line(tmp_path):
    path = write(tmp_path, MINIMAL)
    ok = subprocess.run([sys.executable, "-m", "dalitrain.cli", "config", str(path), "optim.lr=0.5"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "lr: 0.5" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "dalitrain.cli", "config", str(path), "optim.nope=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "optim.nope: unknown key" in bad.stderr
