"""The oneMKL VML warm-up (dalitrain/engine/numerics.py): it covers every op PyTorch sends to VML, runs on the calling
thread, and comes before training initialises weights and before the trainer or an evaluation computes anything."""
import re
import threading
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from fakes import NUM_CLASSES, FakeLoader, FakeModel, fake_config

import dalitrain.train as train_module
from dalitrain.engine import numerics
from dalitrain.engine.distributed import init_distributed
from dalitrain.engine.evaluate import evaluate
from dalitrain.engine.numerics import MKL_VML_OPS, warm_up_mkl_vml
from dalitrain.engine.trainer import Trainer

VML_HEADER = Path(torch.__file__).parent / "include" / "ATen" / "cpu" / "vml.h"


@pytest.mark.skipif(not VML_HEADER.is_file(), reason="this PyTorch ships without its C++ headers")
def test_the_warm_up_covers_every_op_the_installed_pytorch_sends_to_mkl():
    # uncommented `IMPLEMENT_VML_MKL(op, MklName)` lines: the ops ATen runs through vm{s,d}<MklName>
    sent = set(re.findall(r"^IMPLEMENT_VML_MKL\((\w+),", VML_HEADER.read_text(), flags=re.MULTILINE))
    assert sent, f"no IMPLEMENT_VML_MKL line in {VML_HEADER}: its layout changed, read it again"
    assert sent == set(MKL_VML_OPS)


def test_the_warm_up_runs_each_op_in_both_precisions_on_the_calling_thread(monkeypatch):
    calls = []
    for name in MKL_VML_OPS:
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda t, _name=name, _real=real: (
            calls.append((_name, t.dtype, t.numel(), threading.get_ident())), _real(t))[1])
    warm_up_mkl_vml.__wrapped__()
    here = threading.get_ident()
    assert sorted(calls, key=str) == sorted([(name, dtype, 1, here) for name in MKL_VML_OPS
                                             for dtype in (torch.float32, torch.float64)], key=str)


def test_training_warms_up_before_it_builds_the_model(tmp_path, monkeypatch):
    order = []

    class Built(Exception):
        pass

    def model(cfg):
        order.append("model")
        raise Built

    monkeypatch.setattr(train_module, "warm_up_mkl_vml", lambda: order.append("warm-up"))
    monkeypatch.setattr(train_module, "experiment_model", model)
    with pytest.raises(Built):
        train_module.train(fake_config(str(tmp_path)))
    assert order == ["warm-up", "model"]


def test_the_trainer_and_an_evaluation_warm_up(tmp_path):
    numerics.warm_up_mkl_vml.cache_clear()
    Trainer(fake_config(str(tmp_path)), init_distributed("cpu"), FakeModel(), train_loader=lambda e, s: [])
    assert warm_up_mkl_vml.cache_info().currsize == 1

    numerics.warm_up_mkl_vml.cache_clear()
    evaluate(FakeModel(), FakeLoader(epoch=0, steps=1), dataset_names=["d0", "d1"], num_classes=NUM_CLASSES,
             expected=[0, 0], device=torch.device("cpu"), autocast=nullcontext)
    assert warm_up_mkl_vml.cache_info().currsize == 1
