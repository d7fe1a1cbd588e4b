from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import nn

from dalitrain.data.batch import Batch
from dalitrain.engine.evaluate import evaluate


class Out(NamedTuple):
    logits: list


class LookupModel(nn.Module):
    """Returns the logits stored in the video tensor's first voxel row: video[:, 0, 0, 0, :C_k]."""

    def forward(self, video):
        return Out([video[:, 0, 0, 0, :3], video[:, 0, 0, 0, :7]])


def batch(rows):
    """rows: (dataset, index, label, valid, logits)"""
    video = torch.zeros(len(rows), 1, 1, 1, 7)
    for b, row in enumerate(rows):
        video[b, 0, 0, 0, :len(row[4])] = torch.tensor(row[4], dtype=torch.float32)
    cols = list(zip(*rows))
    return Batch(video, torch.tensor(cols[2]), torch.tensor(cols[0]), torch.tensor(cols[1]), torch.tensor(cols[3]))


def test_multi_view_softmax_averaging_by_hand():
    # dataset 0, video 5 (label 2): view 1 prefers class 0 slightly, view 2 prefers class 2 strongly -> correct
    # dataset 0, video 6 (label 1): one view preferring class 0 -> wrong; a padding row that would be right ignored
    # dataset 1, video 0 (label 6): 7 classes, label ranked 5th of 7 -> top-1 wrong, top-5 right
    loader = [
        batch([(0, 5, 2, True, [1.0, 0.0, 0.9]), (0, 6, 1, True, [3.0, 0.0, 0.0]),
               (1, 0, 6, True, [7.0, 6.0, 5.0, 4.0, 0.0, 0.0, 3.0])]),
        batch([(0, 5, 2, True, [0.0, 0.0, 5.0]), (0, 6, 1, False, [0.0, 9.0, 0.0])]),
    ]
    results = evaluate(LookupModel(), loader, dataset_names=["a", "b"], num_classes=[3, 7], expected=[2, 3],
                       device=torch.device("cpu"), autocast=nullcontext)
    a, b = results
    assert (a.top1, a.top5, a.videos, a.expected) == (50.0, 100.0, 2, 2)  # top-5 of 3 classes is always right
    assert (b.top1, b.top5, b.videos, b.expected) == (0.0, 100.0, 1, 3)
    assert b.chance_top1 == 100 / 7 and b.chance_top5 == 500 / 7
    assert (a.predicted_classes, b.predicted_classes) == (2, 1)  # video 5 -> class 2, video 6 -> class 0
