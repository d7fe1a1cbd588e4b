"""Co-finetuning's criterion: each sample's cross-entropy on its own dataset's head, averaged over the batch."""
import math

import torch

from dalitrain.config import DataConfig, DatasetConfig, ExperimentConfig, LossConfig
from dalitrain.losses.classification import Targets
from dalitrain.losses.cofinetune import CoFinetuneLoss
from dalitrain.methods import build_criterion, model_parts
from dalitrain.models import ModelOutput

LN3 = math.log(3.0)


def output(logits):
    return ModelOutput(torch.zeros(len(logits[0]), 4), logits)


def test_one_dataset_batch_is_that_heads_mean_cross_entropy_by_hand():
    # both samples from dataset 1: row 0 [0, ln3] label 1 -> log(4/3); row 1 [0, 0] label 0 -> log 2
    logits = [torch.tensor([[5.0, -5.0, 0.0], [1.0, 2.0, 3.0]]), torch.tensor([[0.0, LN3], [0.0, 0.0]])]
    out = CoFinetuneLoss(2)(output(logits), Targets.plain(torch.tensor([1, 0])), torch.tensor([1, 1]))
    assert math.isclose(out.total.item(), (math.log(4 / 3) + math.log(2)) / 2, rel_tol=1e-6)
    assert set(out.terms) == {"ce", "loss"}


def test_mixed_batch_weighs_each_dataset_by_its_share_and_other_heads_get_zero_gradients():
    # sample 0 from dataset 0 ([ln3, 0], label 0 -> log(4/3)), samples 1-2 from dataset 1 (uniform -> log 2 each)
    logits = [torch.tensor([[LN3, 0.0], [9.0, -9.0], [9.0, -9.0]], requires_grad=True),
              torch.zeros(3, 2, requires_grad=True)]
    out = CoFinetuneLoss(2)(output(logits), Targets.plain(torch.tensor([0, 1, 0])), torch.tensor([0, 1, 1]))
    assert math.isclose(out.total.item(), (math.log(4 / 3) + 2 * math.log(2)) / 3, rel_tol=1e-6)
    out.total.backward()
    assert torch.all(logits[0].grad[1:] == 0) and torch.all(logits[1].grad[0] == 0)
    assert logits[0].grad[0].abs().sum() > 0 and logits[1].grad[1:].abs().sum() > 0


def test_label_smoothing_reaches_the_cross_entropy():
    # 2 classes, smoothing 0.2: target [0.9, 0.1] on uniform logits is still log 2; on [ln3, 0] it is
    # -(0.9 log(3/4) + 0.1 log(1/4))
    logits = [torch.tensor([[LN3, 0.0]])]
    out = CoFinetuneLoss(1, label_smoothing=0.2)(output(logits), Targets.plain(torch.tensor([0])), torch.tensor([0]))
    assert math.isclose(out.total.item(), -(0.9 * math.log(0.75) + 0.1 * math.log(0.25)), rel_tol=1e-6)


def test_the_method_decides_the_model_parts_and_the_criterion():
    data = DataConfig(datasets=[DatasetConfig(name=f"d{k}", manifest="m.txt", num_classes=3) for k in range(2)])
    multitrain = ExperimentConfig(data=data)
    assert model_parts(multitrain).expander and model_parts(multitrain).projection
    no_info = ExperimentConfig(data=data, loss=LossConfig(informative=False))
    assert not model_parts(no_info).expander and model_parts(no_info).projection
    cofinetune = ExperimentConfig(data=data, method="cofinetune", loss=LossConfig(label_smoothing=0.1))
    assert not model_parts(cofinetune).expander and not model_parts(cofinetune).projection
    criterion = build_criterion(cofinetune)
    assert isinstance(criterion, CoFinetuneLoss) and criterion.label_smoothing == 0.1


def test_localisation_samples_are_scored_per_box_with_bce_weighted_by_their_share():
    # sample 0 from classification dataset 0 ([ln3, 0], label 0 -> log(4/3)); samples 1, 2 from localisation
    # dataset 1 with one box each: logits [0, 0] vs actions [1, 0] -> BCE log 2 both; [ln3, 0] vs [1, 1] ->
    # log(4/3) and log 2. L = log(4/3) / 3 + (2/3) * mean over the 2 boxes of each box's mean over actions.
    box_logits = torch.tensor([[0.0, 0.0], [LN3, 0.0]], requires_grad=True)
    out = ModelOutput(torch.zeros(3, 4), [torch.tensor([[LN3, 0.0], [0.0, 0.0], [0.0, 0.0]]), None],
                      box_logits=box_logits)
    targets = Targets.plain(torch.tensor([0, 0, 0]))
    targets.box_labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    terms = CoFinetuneLoss(2, box_dataset=1)(out, targets, torch.tensor([0, 1, 1]))
    box = (math.log(2) + (math.log(4 / 3) + math.log(2)) / 2) / 2
    assert math.isclose(terms.terms["box_bce"].item(), 2 / 3 * box, rel_tol=1e-6)
    assert math.isclose(terms.total.item(), math.log(4 / 3) / 3 + 2 / 3 * box, rel_tol=1e-6)
    terms.total.backward()
    assert box_logits.grad.abs().sum() > 0


def test_a_batch_without_boxes_gives_a_finite_loss_and_a_zero_box_gradient():
    box_logits = torch.zeros(0, 2, requires_grad=True)
    out = ModelOutput(torch.zeros(1, 4), [torch.tensor([[LN3, 0.0]]), None], box_logits=box_logits)
    targets = Targets.plain(torch.tensor([0]))
    targets.box_labels = torch.zeros(0, 2)
    terms = CoFinetuneLoss(2, box_dataset=1)(out, targets, torch.tensor([0]))
    assert math.isclose(terms.total.item(), math.log(4 / 3), rel_tol=1e-6)
    assert terms.terms["box_bce"].item() == 0.0
