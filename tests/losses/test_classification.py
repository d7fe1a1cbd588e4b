import math

import torch

from dalitrain.losses.classification import Targets, masked_cross_entropy_sum

LN3 = math.log(3.0)


def test_plain_cross_entropy_by_hand():
    # softmax([0, ln3]) = [1/4, 3/4]; the second row belongs to another dataset and has a label out of range
    logits = torch.tensor([[0.0, LN3], [5.0, -5.0]])
    targets = Targets.plain(torch.tensor([1, 7]))
    mask = torch.tensor([True, False])
    assert math.isclose(masked_cross_entropy_sum(logits, targets, mask).item(), math.log(4 / 3), rel_tol=1e-6)


def test_label_smoothing_by_hand():
    logits = torch.tensor([[0.0, LN3]])
    targets = Targets.plain(torch.tensor([1]))
    value = masked_cross_entropy_sum(logits, targets, torch.tensor([True]), label_smoothing=0.2)
    expected = 0.8 * math.log(4 / 3) + 0.2 * 0.5 * (math.log(4) + math.log(4 / 3))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_mixed_targets_by_hand():
    logits = torch.tensor([[0.0, LN3]])
    targets = Targets(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.25]))
    value = masked_cross_entropy_sum(logits, targets, torch.tensor([True]))
    assert math.isclose(value.item(), 0.25 * math.log(4) + 0.75 * math.log(4 / 3), rel_tol=1e-6)


def test_masked_rows_get_no_gradient_and_empty_mask_is_zero():
    logits = torch.randn(4, 3, requires_grad=True)
    targets = Targets.plain(torch.tensor([0, 1, 2, 1]))
    mask = torch.tensor([True, False, True, False])
    masked_cross_entropy_sum(logits, targets, mask).backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.all(logits.grad[mask].abs().sum(1) > 0)
    empty = masked_cross_entropy_sum(logits, targets, torch.zeros(4, dtype=torch.bool))
    assert empty.item() == 0.0
