import math

import torch

from dalitrain.config import LossConfig
from dalitrain.losses.classification import Targets
from dalitrain.losses.multitrain import MultiTrainLoss
from dalitrain.models import ModelOutput

LN3 = math.log(3.0)
# sample 0 is from dataset 0 (label 1), sample 1 from dataset 1 (label 0)
LOGITS = [torch.tensor([[0.0, LN3], [9.0, 9.0]]), torch.tensor([[9.0, -9.0], [0.0, 0.0]])]
ADDED = [torch.tensor([[LN3, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.0, LN3]])]
DATASET = torch.tensor([0, 1])
TARGETS = Targets.plain(torch.tensor([1, 0]))
EXPANDED = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])


def loss(**switches):
    cfg = LossConfig(**{"informative": False, "uncertainty": False, **switches})
    return MultiTrainLoss(cfg, num_datasets=2)(ModelOutput(EXPANDED[:, 0], LOGITS, EXPANDED, ADDED), TARGETS, DATASET)


def test_vanilla_multi_head_ce_by_hand():
    out = loss(projection=False)
    assert math.isclose(out.total.item(), math.log(4 / 3) + math.log(2), rel_tol=1e-6)
    assert set(out.terms) == {"ce", "loss"}


def test_projection_add_by_hand():
    # Y'_0 row 0 = [ln3, ln3] -> log 2; Y'_1 row 1 = [0, ln3] with label 0 -> log 4
    out = loss(projection=True)
    expected_proj = math.log(2) + math.log(4)
    assert math.isclose(out.terms["projection"].item(), expected_proj, rel_tol=1e-6)
    assert math.isclose(out.total.item(), math.log(4 / 3) + math.log(2) + expected_proj, rel_tol=1e-6)


def test_projection_without_add_by_hand():
    # Y'_0 row 0 = [ln3, 0], label 1 -> log 4; Y'_1 row 1 = [0, ln3], label 0 -> log 4
    out = loss(projection=True, projection_add=False)
    assert math.isclose(out.terms["projection"].item(), 2 * math.log(4), rel_tol=1e-6)


def test_uncertainty_halves_at_start():
    out = loss(projection=False, uncertainty=True)
    assert math.isclose(out.total.item(), 0.5 * (math.log(4 / 3) + math.log(2)), rel_tol=1e-6)


def test_informative_by_hand():
    # column 0: unbiased var 2 -> std > 1, no hinge; column 1: std = sqrt(1e-4) = 0.01 -> hinge 0.99;
    # mean over columns 0.495 x 25 = 12.375; covariance diag(2, 0) has no off-diagonal; x 0.1
    out = loss(projection=False, informative=True)
    assert math.isclose(out.terms["informative"].item(), 1.2375, rel_tol=1e-4)


def test_absent_dataset_contributes_nothing_and_gets_no_gradient():
    logits = [torch.randn(3, 4, requires_grad=True), torch.randn(3, 5, requires_grad=True)]
    dataset = torch.tensor([0, 0, 0])  # dataset 1 absent
    targets = Targets.plain(torch.tensor([1, 3, 0]))
    criterion = MultiTrainLoss(LossConfig(informative=False, projection=False), num_datasets=2)
    out = criterion(ModelOutput(torch.randn(3, 8), logits), targets, dataset)
    out.total.backward()
    assert torch.all(logits[1].grad == 0) and logits[0].grad.abs().sum() > 0
    assert criterion.uncertainty.log_sigma.grad[1] == 0
    # changing the absent head's logits changes nothing
    other = criterion(ModelOutput(torch.randn(3, 8), [logits[0], logits[1] * 10]), targets, dataset)
    assert torch.equal(other.total, out.total)
