"""MultiTrain's objectives against values worked out by hand from the equations (the paper's Eq. 4-6, the released
`MultiHeadLoss`), on three datasets of two classes: samples 0 and 1 are dataset 0's (labels 1, 0), sample 2 is
dataset 1's (label 0), dataset 2 is absent. Logits are chosen so that every cross-entropy is a log of a simple
number: CE([a, b], label 1) = log(1 + e^(a - b)).
"""
import math

import pytest
import torch

import dalitrain.losses.multitrain as multitrain
from dalitrain.config import LossConfig
from dalitrain.losses.classification import Targets
from dalitrain.losses.multitrain import MultiTrainLoss
from dalitrain.models import ModelOutput
from dalitrain.models.heads import Projections

L2, L3, L4 = math.log(2.0), math.log(3.0), math.log(4.0)
JUNK = [[7.0, -7.0], [-5.0, 5.0], [3.0, 9.0]]  # rows of other datasets' samples: must not matter
DATASET = torch.tensor([0, 0, 1])
TARGETS = Targets.plain(torch.tensor([1, 0, 0]))


def rows(*r):
    return torch.tensor(r, requires_grad=True)


def batch():
    """Y_0, Y_1, Y_2 and P_ik (source i into dataset k) on the three samples."""
    logits = [rows([0.0, L3], [0.0, 0.0], JUNK[0]),  # CE log(4/3), log 2
              rows(JUNK[1], JUNK[2], [0.0, L3]),  # CE log 4
              rows(JUNK[0], JUNK[1], JUNK[2])]  # dataset 2: absent
    p10, p20 = rows([L3, 0.0], [0.0, L3], JUNK[2]), rows([0.0, 0.0], [0.0, 0.0], JUNK[0])
    p01, p21 = rows(JUNK[0], JUNK[1], [L3, 0.0]), rows(JUNK[2], JUNK[0], [0.0, 0.0])
    p02, p12 = rows(JUNK[1], JUNK[1], JUNK[1]), rows(JUNK[2], JUNK[2], JUNK[2])
    projections = Projections([[p10, p20], [p01, p21], [p02, p12]], torch.tensor(2.5))
    return ModelOutput(torch.zeros(3, 4), logits, None, projections)


# per dataset, the sum over its samples of the per-sample loss, written from the equations:
HEAD = (math.log(4 / 3) + L2, L4)  # CE(Y_k)
SUMS = {
    "none": HEAD,
    # CE(Y_k + P_ik + P_jk): rows [ln3, ln3] (label 1) -> log 2, [0, ln3] (label 0) -> log 4; dataset 1 [ln3, ln3]
    "paper": (L2 + L4, L2),
    # CE(Y_k) + mean over the two sources of CE(P_ik): P_10 rows -> log 4, log 4; P_20 -> log 2, log 2;
    # P_01 -> log(4/3), P_21 -> log 2
    "released": (HEAD[0] + (L4 + L2) / 2 + (L4 + L2) / 2, HEAD[1] + (math.log(4 / 3) + L2) / 2),
    "head_and_sum": (HEAD[0] + L2 + L4, HEAD[1] + L2),
}


def objective(**cfg):
    return MultiTrainLoss(LossConfig(informative=False, **cfg), num_datasets=3)


@pytest.mark.parametrize("projection", list(SUMS))
def test_per_sample_reduction_divides_every_dataset_by_the_batch(projection):
    out = objective(projection=projection, reduction="per_sample")(batch(), TARGETS, DATASET)
    s0, s1 = SUMS[projection]
    assert out.total.item() == pytest.approx((s0 + s1) / 3, rel=1e-6)


@pytest.mark.parametrize("projection", list(SUMS))
def test_per_dataset_reduction_averages_within_each_dataset(projection):
    out = objective(projection=projection, reduction="per_dataset")(batch(), TARGETS, DATASET)
    s0, s1 = SUMS[projection]
    assert out.total.item() == pytest.approx(s0 / 2 + s1 / 1, rel=1e-6)


def test_logged_terms_heads_ce_and_projection():
    out = objective(projection="released", reduction="per_sample")(batch(), TARGETS, DATASET)
    assert out.terms["ce"].item() == pytest.approx(sum(HEAD) / 3, rel=1e-6)
    assert out.terms["projection"].item() == pytest.approx((sum(SUMS["released"]) - sum(HEAD)) / 3, rel=1e-6)
    paper = objective(projection="paper", reduction="per_sample")(batch(), TARGETS, DATASET)
    # under the paper's objective the heads' CE is logged, but only the projected CE is the loss
    assert paper.terms["ce"].item() == pytest.approx(sum(HEAD) / 3, rel=1e-6)
    assert paper.total.item() == pytest.approx(paper.terms["projection"].item(), rel=1e-6)


def test_projection_weight_scales_the_released_projection_terms():
    out = objective(projection="released", reduction="per_dataset", projection_weight=0.5)(batch(), TARGETS, DATASET)
    s0 = HEAD[0] + 0.5 * (L4 + L2)
    s1 = HEAD[1] + 0.5 * (math.log(4 / 3) + L2) / 2
    assert out.total.item() == pytest.approx(s0 / 2 + s1, rel=1e-6)


def test_log_sigma_uncertainty_per_dataset_is_the_papers_eq_6():
    criterion = objective(projection="paper", reduction="per_dataset", uncertainty="log_sigma")
    with torch.no_grad():
        criterion.uncertainty.log_sigma.copy_(torch.tensor([L2, 0.0, 0.3]))
    out = criterion(batch(), TARGETS, DATASET)
    # L_k / (2 sigma_k^2) + log sigma_k, sigma = (2, 1); dataset 2 is absent and adds nothing
    s0, s1 = SUMS["paper"]
    assert out.total.item() == pytest.approx((s0 / 2) / 8 + L2 + s1 / 2, rel=1e-6)


def test_sigma_sq_uncertainty_per_sample_is_the_released_code():
    criterion = objective(projection="released", reduction="per_sample", uncertainty="sigma_sq")
    with torch.no_grad():
        criterion.uncertainty.sigma_sq.copy_(torch.tensor([2.0, 4.0, 0.5]))
    out = criterion(batch(), TARGETS, DATASET)
    # MultiHeadLoss: sum_k (S_k / (2 sigma_k^2) + 0.5 log sigma_k^2), all / B
    s0, s1 = SUMS["released"]
    assert out.total.item() == pytest.approx((s0 / 4 + 0.5 * L2 + s1 / 8 + 0.5 * L4) / 3, rel=1e-6)


def test_sigma_sq_starts_uniform_in_the_released_range():
    sigma_sq = objective(uncertainty="sigma_sq").uncertainty.sigma_sq
    assert sigma_sq.shape == (3,) and bool(((sigma_sq >= 0.2) & (sigma_sq <= 1.0)).all())


def test_sparsity_adds_its_weight_times_the_l1_of_the_projections():
    plain = objective(projection="released")(batch(), TARGETS, DATASET)
    sparse = objective(projection="released", projection_sparsity=0.1)(batch(), TARGETS, DATASET)
    assert sparse.total.item() == pytest.approx(plain.total.item() + 0.1 * 2.5, rel=1e-6)
    assert sparse.terms["sparsity"].item() == pytest.approx(0.25)


@pytest.mark.parametrize("projection", list(SUMS))
@pytest.mark.parametrize("uncertainty", ["none", "log_sigma", "sigma_sq"])
def test_other_datasets_rows_and_the_absent_dataset_get_no_gradient(projection, uncertainty):
    criterion = objective(projection=projection, uncertainty=uncertainty)
    out = batch()
    criterion(out, TARGETS, DATASET).total.backward()
    assert torch.all(out.logits[2].grad == 0)
    assert torch.all(out.logits[0].grad[2] == 0) and torch.all(out.logits[1].grad[:2] == 0)
    if projection != "none":
        assert all(torch.all(p.grad == 0) for p in out.projected.per_source[2])
        assert torch.all(out.projected.per_source[0][0].grad[2] == 0)
    if uncertainty != "none":
        parameter = next(criterion.uncertainty.parameters())
        assert parameter.grad[2] == 0 and parameter.grad[0] != 0


def test_informative_by_hand():
    # column 0: unbiased var 2 -> std > 1, no hinge; column 1: std = sqrt(1e-4) = 0.01 -> hinge 0.99;
    # mean over columns 0.495 x 25 = 12.375; covariance diag(2, 0) has no off-diagonal; x 0.1
    expanded = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    out = MultiTrainLoss(LossConfig(projection="none"), num_datasets=3)(
        ModelOutput(torch.zeros(2, 4), [y[:2] for y in batch().logits], expanded), Targets.plain(torch.tensor([1, 0])),
        torch.tensor([0, 0]))
    assert out.terms["informative"].item() == pytest.approx(1.2375, rel=1e-4)


@pytest.mark.parametrize("reduction", ["per_sample", "per_dataset"])
@pytest.mark.parametrize("uncertainty", ["none", "log_sigma", "sigma_sq"])
def test_two_ranks_average_to_the_whole_batch(monkeypatch, reduction, uncertainty):
    """Each rank's loss on its half, with the global counts and world size 2, averages (as DDP averages
    gradients) to the loss on the whole batch: values and gradients."""
    torch.manual_seed(0)
    dataset = torch.tensor([0, 1, 0, 0, 2, 1])
    targets = Targets.plain(torch.tensor([1, 0, 0, 1, 1, 1]))
    heads = [torch.randn(6, 2, requires_grad=True) for _ in range(3)]
    sources = [[torch.randn(6, 2, requires_grad=True) for _ in range(2)] for _ in range(3)]
    criterion = objective(projection="released", reduction=reduction, uncertainty=uncertainty)

    def output(rows_):
        return ModelOutput(torch.zeros(6, 4)[rows_], [y[rows_] for y in heads], None,
                           Projections([[p[rows_] for p in s] for s in sources], torch.tensor(0.0)))

    whole = criterion(output(slice(None)), targets, dataset).total
    inputs = heads + list(criterion.parameters())  # the uncertainty parameter, when on
    whole_grads = torch.autograd.grad(whole, inputs)
    global_counts = torch.bincount(dataset, minlength=3).float()
    monkeypatch.setattr(multitrain, "world_size", lambda: 2)
    monkeypatch.setattr(multitrain, "global_dataset_counts", lambda d, k: global_counts)
    halves = [criterion(output(r), Targets.plain(targets.label[r]), dataset[r]).total
              for r in (slice(0, 3), slice(3, 6))]
    mean = (halves[0] + halves[1]) / 2
    assert mean.item() == pytest.approx(whole.item(), rel=1e-6)
    mean_grads = torch.autograd.grad(mean, inputs)
    for got, expected in zip(mean_grads, whole_grads):
        torch.testing.assert_close(got, expected)
