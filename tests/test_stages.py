"""Curricula (`stages:`): SFA's two stages on real clips, killed inside stage 2 and resumed; stage config errors."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dalitrain.config import ConfigError, expand_stages, load_config
from tests.pipelines.conftest import make_corpus

WORKER = Path(__file__).parent / "engine" / "stages_worker.py"


def curriculum(root: Path, datasets: dict) -> dict:
    return {
        "method": "cofinetune",
        "data": {"base_dir": str(root), "datasets": [datasets["clipset"], datasets["ssv2"]], "batch_size": 2,
                 "num_frames": 8, "stride": 2, "short_side": [64, 72], "crop_size": 64, "device": "cpu"},
        "model": {"arch": "vivit_fe_tiny", "head": "linear", "drop_path_rate": 0.0},
        "optim": {"lr": 1e-4, "warmup_epochs": 0.0},
        "train": {"epochs": 2, "log_every": 1, "bf16": False, "keep_last": 4},
        "eval": {"temporal_views": 1, "spatial_views": 1, "short_side": 64, "batch_size": 4},
        "stages": [
            {"name": "stage1", "data": {"num_frames": 8}},
            {"name": "stage2", "data": {"num_frames": 16, "stride": 1},
             "model": {"freeze": ["spatial"], "adapter": "mlp", "init_skip": ["backbone.adapter"]}},
        ],
    }


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stages")
    path = root / "sfa.yaml"
    path.write_text(yaml.safe_dump(curriculum(root / "corpus", make_corpus(root / "corpus"))))
    return path


def run(config: Path, output: Path, *kill_at: int) -> subprocess.CompletedProcess:
    kill = ["--kill-at", *map(str, kill_at)] if kill_at else []
    return subprocess.run([sys.executable, str(WORKER), str(config), *kill, f"train.output_dir={output}"],
                          capture_output=True, text=True, timeout=600)


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def test_killed_inside_stage_two_resumes_to_the_uninterrupted_losses(config_file, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run(config_file, whole)
    assert done.returncode == 0, done.stderr[-3000:]
    stage1_best = whole / "stage1" / "checkpoints" / "best.pt"
    assert f"model.init_from {stage1_best}: " in done.stdout
    assert "resized: backbone.temporal.pos_embed; kept at initialisation: backbone.adapter.mlp.fc1.weight" in done.stdout
    record = json.loads((whole / "stage1" / "stage.json").read_text())
    assert record["checkpoint"] == str(stage1_best) and record["minutes"] > 0

    first = run(config_file, killed, 16, 1, 1)  # stage 2, second epoch, second batch: after its epoch-1 checkpoint
    assert first.returncode == -signal.SIGKILL
    assert (killed / "stage1" / "stage.json").is_file() and not (killed / "stage2" / "stage.json").exists()
    second = run(config_file, killed)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage stage1: finished before" in second.stdout and "resumed from" in second.stdout
    assert losses(killed / "stage1") == losses(whole / "stage1")
    expected, got = losses(whole / "stage2"), losses(killed / "stage2")
    assert sorted(expected) == list(range(1, 9)) and got == expected
    final_whole = torch.load(whole / "stage2" / "checkpoints" / "step-00000008.pt", weights_only=True)["model"]
    final_killed = torch.load(killed / "stage2" / "checkpoints" / "step-00000008.pt", weights_only=True)["model"]
    assert all(torch.equal(final_whole[k], final_killed[k]) for k in final_whole)
    # stage 2 trained the adapter and the temporal transformer, and left the spatial transformer as stage 1 ended
    stage1 = torch.load(stage1_best, weights_only=True)["model"]
    spatial = [k for k in stage1 if k.startswith("backbone.spatial.") and "num_batches_tracked" not in k]
    assert spatial and all(torch.equal(stage1[k], final_whole[k]) for k in spatial)
    assert not torch.equal(stage1["backbone.temporal.blocks.0.attn.qkv.weight"],
                           final_whole["backbone.temporal.blocks.0.attn.qkv.weight"])
    assert final_whole["backbone.adapter.mlp.fc2.weight"].abs().sum() > 0


def test_stage_errors_name_the_stage(config_file, tmp_path):
    raw = yaml.safe_load(config_file.read_text())
    cases = [
        ({"name": "s2", "model": {"freez": ["spatial"]}}, r"stages.1 \(s2\): model.freez: unknown key"),
        ({"name": "s2", "data": {"num_frames": "many"}}, r"stages.1 \(s2\): data.num_frames: expected an integer"),
        ({"name": "stage1"}, r"stages.1.name: each stage needs a unique name"),
        ({"model": {}}, r"stages.1.name: each stage needs a unique name"),
        ({"name": "s2", "stages": []}, r"stages.1.stages: a stage cannot have stages"),
    ]
    for stage, message in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**raw, "stages": [raw["stages"][0], stage]}))
        with pytest.raises(ConfigError, match=message) as err:
            load_config(path)
        assert "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_stages_inherit_the_rest_and_run_in_their_own_folders(config_file):
    cfg = load_config(config_file, ["train.output_dir=/runs/sfa", "optim.lr=3e-4"])
    (name1, first), (name2, second) = expand_stages(cfg)
    assert (name1, name2) == ("stage1", "stage2")
    assert first.train.output_dir == "/runs/sfa/stage1" and second.train.output_dir == "/runs/sfa/stage2"
    assert first.optim.lr == second.optim.lr == 3e-4
    assert (first.data.num_frames, second.data.num_frames, second.data.stride) == (8, 16, 1)
    assert first.model.freeze == [] and second.model.freeze == ["spatial"] and second.model.adapter == "mlp"
    assert second.data.datasets == first.data.datasets and not first.stages and not second.stages


def test_command_line_overrides_reach_into_a_stage(config_file):
    cfg = load_config(config_file, ["stages.1.model.init_skip=[backbone.adapter,heads]", "stages.1.train.epochs=3",
                                    "stages.0.data.num_frames=4", "stages.1.name=frozen_alone"])
    (_, first), (name, second) = expand_stages(cfg)
    assert name == "frozen_alone" and second.train.output_dir.endswith("/frozen_alone")
    assert second.model.init_skip == ["backbone.adapter", "heads"] and second.train.epochs == 3
    assert first.data.num_frames == 4 and first.train.epochs == 2 and second.model.freeze == ["spatial"]
    with pytest.raises(ConfigError, match="command line: stages.1.model.freez: unknown key"):
        load_config(config_file, ["stages.1.model.freez=[spatial]"])
    with pytest.raises(ConfigError, match="command line: stages.5: no list entry '5'"):
        load_config(config_file, ["stages.5.train.epochs=1"])


def test_train_refuses_a_missing_init_from_in_one_line(config_file, tmp_path, capsys):
    from dalitrain.train import main
    missing = tmp_path / "nowhere" / "best.pt"
    assert main([str(config_file), "stages=[]", f"model.init_from={missing}", f"train.output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dalitrain train: error: {missing}: checkpoint not found"


def test_a_damaged_stage_record_is_one_line(tmp_path):
    from dalitrain.errors import InputError
    from dalitrain.train import _read_record
    record = tmp_path / "stage.json"
    record.write_text("{not json")
    with pytest.raises(InputError, match=r"stage.json: not a finished stage's record \(JSONDecodeError: .*\); delete "
                                         r"it to run the stage again") as err:
        _read_record(record)
    assert "\n" not in str(err.value)
    record.write_text('{"stage": "s1"}')
    with pytest.raises(InputError, match=r"stage.json: not a finished stage's record \(KeyError: 'evaluation'\)"):
        _read_record(record)
    # the minutes a finished stage took count against the curriculum's budget: a record without them is refused too
    record.write_text('{"stage": "s1", "checkpoint": "best.pt", "evaluation": null, "clips_per_s": 1.0, '
                      '"global_step": 4, "stopped_by_budget": false}')
    with pytest.raises(InputError, match=r"stage.json: not a finished stage's record \(KeyError: 'minutes'\)"):
        _read_record(record)


def test_a_curriculum_budget_is_a_deadline_for_all_its_stages(config_file, tmp_path, monkeypatch):
    """Stage 1 is capped by its own budget; stage 2 gets what is left of the curriculum's (each fake stage takes 4
    minutes of a fake clock); the demo caps every stage but the last at its epoch share of 3/4 of the budget."""
    import dalitrain.train as train_module
    from dalitrain.demo import share_budget_among_stages
    from dalitrain.engine.trainer import TrainResult

    clock, budgets = [0.0], []

    def fake_train(stage, ctx):
        budgets.append(stage.train.time_budget_minutes)
        clock[0] += 4 * 60
        checkpoint = Path(stage.train.output_dir) / "checkpoints" / "step-1.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(b"")
        return TrainResult(checkpoint, None, 0.0, 1, False)

    monkeypatch.setattr(train_module, "train", fake_train)
    monkeypatch.setattr(train_module.time, "monotonic", lambda: clock[0])
    cfg = load_config(config_file, [f"train.output_dir={tmp_path / 'run'}", "train.time_budget_minutes=12"])
    share_budget_among_stages(cfg)
    assert cfg.stages[0]["train"]["time_budget_minutes"] == 12 * 0.75  # epochs 2 and 2: all of 3/4 to stage 1
    assert "time_budget_minutes" not in cfg.stages[1].get("train", {})
    train_module.train_stages(cfg, train_module.DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    assert budgets == [9.0, 8.0]  # stage 2: 12 - the 4 minutes stage 1 took
