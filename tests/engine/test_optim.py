import math

import pytest
import torch

from dalitrain.config import OptimConfig
from dalitrain.engine.optim import WarmupCosine, build_optimizer, build_scheduler


def test_warmup_then_cosine_by_hand():
    schedule = WarmupCosine(base_lr=1.0, start_lr=0.1, min_lr=0.0, warmup_steps=10, total_steps=110)
    assert schedule.lr(0) == pytest.approx(0.1)
    assert schedule.lr(5) == pytest.approx(0.55)
    assert schedule.lr(10) == pytest.approx(1.0)
    assert schedule.lr(60) == pytest.approx(0.5)  # half way through the cosine
    assert schedule.lr(110) == pytest.approx(0.0)


def test_scheduler_sets_the_optimizer_lr_per_step():
    param = torch.nn.Parameter(torch.zeros(2))
    cfg = OptimConfig(lr=1e-3, warmup_epochs=1, warmup_start_lr=1e-5, min_lr=1e-6)
    optimizer = build_optimizer([{"params": [param]}], cfg, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4, epochs=3)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(1e-5) and seen[4] == pytest.approx(1e-3)
    assert seen[8] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_apex_asked_for_but_absent_is_one_clear_line():
    cfg = OptimConfig(fused="apex")
    with pytest.raises(ValueError, match="NVIDIA apex is not importable|CUDA-only"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], cfg, torch.device("cpu"))


def test_sgd_with_momentum_and_nesterov_from_config():
    param = torch.nn.Parameter(torch.ones(3))
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    optimizer = build_optimizer([{"params": [param]}], cfg, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"]
    for _ in range(2):  # gradient 1 each step: buffer 1 then 1.9; nesterov step = g + 0.9 * buffer
        param.grad = torch.ones(3)
        optimizer.step()
    torch.testing.assert_close(param.detach(), torch.full((3,), 1.0 - 0.1 * 1.9 - 0.1 * (1 + 0.9 * 1.9)))


def test_apex_with_sgd_is_one_line():
    cfg = OptimConfig(name="sgd", fused="apex")
    with pytest.raises(ValueError) as err:
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], cfg, torch.device("cpu"))
    assert str(err.value) == "optim.fused: apex provides AdamW here; with optim.name: sgd use optim.fused=auto"
