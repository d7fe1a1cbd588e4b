import json

import pytest
import torch

from fakes import FakeLoader, FakeModel, fake_config

from dalitrain.config import TrainConfig
from dalitrain.engine.distributed import init_distributed
from dalitrain.engine.trainer import Trainer, TrainingStopped


def trainer(tmp_path, nan_steps=(), steps=4, accumulation=1, with_eval=False, model=None, **train):
    cfg = fake_config(str(tmp_path), train=TrainConfig(**{"epochs": 1, "output_dir": str(tmp_path), "log_every": 1,
                                                          "bf16": False, **train}))
    cfg.optim.accumulation_steps = accumulation
    model = model or FakeModel()
    loaders = lambda epoch, start: FakeLoader(epoch=epoch, start_step=start, nan_steps=nan_steps,  # noqa: E731
                                              steps=steps)
    # evaluation: the 3 x 4 samples of a held-out "epoch", each seen as two identical views
    evaluation = (lambda: [b for b in FakeLoader(epoch=99, steps=3) for _ in range(2)]) if with_eval else None
    return Trainer(cfg, init_distributed("cpu"), model, train_loader=loaders, eval_loader=evaluation,
                   expected_videos=[7, 5]), model


def records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_nan_loss_is_skipped_and_counted(tmp_path, capsys):
    t, model = trainer(tmp_path, nan_steps=(1,))
    result = t.fit()
    assert result.global_step == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())
    train = [r for r in records(tmp_path) if r["kind"] == "train"]
    assert [r["nonfinite_total"] for r in train] == [0, 1, 1, 1]
    assert "non-finite loss or gradient at epoch 1 step 2: step skipped" in capsys.readouterr().out


def test_finiteness_is_read_by_the_host_once_per_optimizer_step(tmp_path, monkeypatch):
    """The micro-steps keep a device-side flag; only the optimizer step reads it (one sync per step)."""
    import dalitrain.engine.trainer as trainer_module
    reads = []
    real = trainer_module.all_ranks
    monkeypatch.setattr(trainer_module, "all_ranks", lambda flag: reads.append(flag) or real(flag))
    t, _ = trainer(tmp_path, nan_steps=(2,), steps=6, accumulation=2)
    assert t.fit().global_step == 3
    # [finite, within the time budget, not preempted] per step: the NaN micro-step spoils its whole window; the
    # epoch's checkpoint adds one read ([written]) after the last step
    assert [flags.tolist() for flags in reads] == [[True, True, True], [False, True, True], [True, True, True],
                                                   [True]]
    train = [r for r in records(tmp_path) if r["kind"] == "train"]
    assert [r["nonfinite_total"] for r in train] == [0, 1, 1]
    assert all(all(v == v for v in r.values() if isinstance(v, float)) for r in train)  # no NaN logged


def test_repeated_nan_stops_with_a_clear_message(tmp_path):
    t, _ = trainer(tmp_path, nan_steps=(0, 1, 2, 3), max_nonfinite_steps=3)
    with pytest.raises(TrainingStopped, match="3 non-finite losses or gradients in a row"):
        t.fit()


def test_checkpoints_keep_last_and_config_written(tmp_path):
    t, _ = trainer(tmp_path, epochs=3, keep_last=2)
    result = t.fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000008.pt", "step-00000012.pt"]
    assert result.checkpoint == tmp_path / "checkpoints" / "step-00000012.pt"
    assert (tmp_path / "config.yaml").is_file()
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["dataset_names"] == ["d0", "d1"] and state["projection"]["0->1"].shape == (5, 3)
    # the untrained projection is a snapshot: training moved the weights away from it
    assert not torch.equal(state["projection"]["0->1"], state["projection_init"]["0->1"])


def test_time_budget_stops_and_saves_the_data_position(tmp_path, capsys):
    t, _ = trainer(tmp_path, epochs=2, time_budget_minutes=0.0)
    result = t.fit()
    assert result.stopped_by_budget and result.global_step == 1
    state = torch.load(result.checkpoint, weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1)
    assert "time budget" in capsys.readouterr().out


def test_accumulation_steps_once_per_window(tmp_path):
    t, _ = trainer(tmp_path, steps=5, accumulation=2)
    assert t.fit().global_step == 3  # windows of 2, 2 and the epoch's last 1


def test_evaluation_best_checkpoint_and_resume_of_a_finished_run(tmp_path, capsys):
    t, _ = trainer(tmp_path, with_eval=True, epochs=2)
    result = t.fit()
    videos = {r.name: r.videos for r in result.evaluation}
    assert sum(videos.values()) == 12 and all(0 <= r.top1 <= 100 for r in result.evaluation)
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    evals = [r for r in records(tmp_path) if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    # resumed after its last epoch: nothing to train, the final model is still evaluated
    again, _ = trainer(tmp_path, with_eval=True, epochs=2)
    second = again.fit()
    assert second.global_step == 8 and second.evaluation is not None
    assert "resumed from" in capsys.readouterr().out


def test_feature_spread_is_logged_and_constant_predictions_are_reported(tmp_path, capsys):
    t, _ = trainer(tmp_path / "healthy", with_eval=True)
    result = t.fit()
    assert all(r["feature_std"] > 0.01 for r in records(tmp_path / "healthy") if r["kind"] == "train")
    err = capsys.readouterr().err  # a few steps may still leave one dataset's few videos on one class
    assert [f"{r.name}: every validation video" in err for r in result.evaluation] == [
        r.predicted_classes == 1 for r in result.evaluation]
    # a backbone frozen at zero weights gives every clip the same features, so the heads predict one class
    collapsed = FakeModel(dropout=0.0)
    collapsed.backbone[1].weight.data.zero_()
    collapsed.backbone[1].weight.requires_grad_(False)
    t, _ = trainer(tmp_path / "collapsed", with_eval=True, model=collapsed)
    result = t.fit()
    assert all(r["feature_std"] == 0 for r in records(tmp_path / "collapsed") if r["kind"] == "train")
    assert [r.predicted_classes for r in result.evaluation] == [1, 1]
    err = capsys.readouterr().err
    assert "d0: every validation video gets the same class" in err and "d1: every" in err


def test_a_failed_checkpoint_write_stops_in_one_line_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import dalitrain.engine.checkpoint as checkpoint_module
    t, _ = trainer(tmp_path, epochs=3)
    real_save = checkpoint_module.torch.save
    writes = []

    def disk_fills_at_the_second_epoch(obj, f):
        writes.append(obj["global_step"])
        if obj["global_step"] > 4:
            raise OSError(28, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_fills_at_the_second_epoch)
    with pytest.raises(TrainingStopped) as stopped:
        t.fit()
    message = str(stopped.value)
    assert "\n" not in message and "step-00000008.pt: checkpoint not written (No space left on device)" in message
    assert "kept in" in message and "step-00000004.pt" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000004.pt"]


def test_progress_lines_and_records_carry_host_memory(tmp_path, capsys):
    t, _ = trainer(tmp_path, steps=2)
    t.fit()
    train = [r for r in records(tmp_path) if r["kind"] == "train"]
    assert len(train) == 2 and all(r["rss_mb"] > 10 for r in train)  # a Python process with torch: > 10 MB
    assert all("cuda_allocated_mb" not in r for r in train)  # CPU run
    assert " | rss " in capsys.readouterr().out


def test_resident_memory_follows_allocations():
    from dalitrain.engine.metrics import memory_usage
    before = memory_usage(torch.device("cpu"))["rss_mb"]
    block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
    assert memory_usage(torch.device("cpu"))["rss_mb"] - before > 48
    del block
