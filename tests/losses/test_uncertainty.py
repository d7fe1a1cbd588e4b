import math

import torch

from dalitrain.losses.uncertainty import UncertaintyWeighting


def test_weighting_by_hand_and_absent_task_ignored():
    weighting = UncertaintyWeighting(2)
    with torch.no_grad():
        weighting.log_sigma.copy_(torch.tensor([math.log(2.0), 0.3]))
    losses = torch.tensor([4.0, 100.0])
    total = weighting(losses, present=torch.tensor([True, False]))
    # 4 / (2 * 2^2) + log 2; the absent task adds nothing
    assert math.isclose(total.item(), 0.5 + math.log(2.0), rel_tol=1e-6)
    total.backward()
    assert weighting.log_sigma.grad[1].item() == 0.0
    # d/ds (L/2 e^{-2s} + s) = 1 - L e^{-2s} = 1 - 4/4 = 0 at s = log 2: the optimum sigma^2 = L/2
    assert abs(weighting.log_sigma.grad[0].item()) < 1e-6


def test_initial_weights_are_one_half():
    assert torch.allclose(UncertaintyWeighting(3).weights(), torch.full((3,), 0.5))


def test_sigma_sq_weighting_by_hand_with_the_regulariser_scaled():
    weighting = UncertaintyWeighting(2, "sigma_sq")
    with torch.no_grad():
        weighting.sigma_sq.copy_(torch.tensor([2.0, 0.5]))
    total = weighting(torch.tensor([4.0, 1.0]), present=torch.tensor([True, True]), regulariser_scale=0.25)
    # 4 / (2 * 2) + 1 / (2 * 0.5) + 0.25 * 0.5 * (log 2 + log 0.5) = 1 + 1 + 0
    assert math.isclose(total.item(), 2.0, rel_tol=1e-6)
    assert torch.allclose(weighting.weights(), torch.tensor([0.25, 1.0]))
