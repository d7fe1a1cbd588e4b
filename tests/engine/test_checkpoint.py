import errno
import os

import pytest
import torch

import dalitrain.engine.checkpoint as checkpoint_module
from dalitrain.engine.checkpoint import CheckpointDir, CheckpointError, CheckpointWriteError, load_checkpoint


def state(step):
    return {"model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "scheduler": {}, "epoch": 0,
            "step_in_epoch": step, "global_step": step}


def test_damaged_newest_is_reported_and_the_previous_used(tmp_path, capsys):
    checkpoints = CheckpointDir(tmp_path, keep_last=3)
    checkpoints.save(state(1), best=False)
    newest = checkpoints.save(state(2), best=False)
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated write
    path, loaded = checkpoints.latest()
    assert path.name == "step-00000001.pt" and loaded["global_step"] == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(newest) in err and "damaged" in err


def test_keep_last_and_best(tmp_path):
    checkpoints = CheckpointDir(tmp_path, keep_last=2)
    for step in range(1, 5):
        checkpoints.save(state(step), best=step == 2)
    assert [p.name for p in checkpoints.step_files()] == ["step-00000003.pt", "step-00000004.pt"]
    assert load_checkpoint(tmp_path / "best.pt")["global_step"] == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_files_name_the_file_in_one_line(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(garbage)
    assert str(garbage) in str(err.value) and "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="missing model"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_code_in_a_pickle_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({**state(1), "extra": CheckpointDir(tmp_path, 1)}, evil)  # an arbitrary object
    with pytest.raises(CheckpointError, match="damaged or not a dalitrain checkpoint"):
        load_checkpoint(evil)


def test_a_full_disk_leaves_the_previous_checkpoints_and_no_temporary_file(tmp_path, monkeypatch):
    checkpoints = CheckpointDir(tmp_path, keep_last=2)
    checkpoints.save(state(1), best=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"step-00000002.pt: checkpoint not written \(No space left"):
        checkpoints.save(state(2), best=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_unwritable_directory_is_one_line(tmp_path):
    (tmp_path / "not_a_dir").write_text("a file where the checkpoint directory should be")
    with pytest.raises(CheckpointWriteError, match=r"not_a_dir/step-00000003.pt: checkpoint not written \("):
        CheckpointDir(tmp_path / "not_a_dir", keep_last=2).save(state(3), best=False)
