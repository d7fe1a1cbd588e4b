"""The box head: normalised boxes select their region of the (time-averaged) feature map."""
import torch

from dalitrain.models.box_head import BoxHead, box_loss


def test_each_box_reads_its_own_region_and_clip():
    features = torch.zeros(2, 3, 4, 8, 8)  # [B, C, T', H', W']
    features[0, 0, :, 0:4, 0:4] = 2.0  # clip 0, channel 0: the top-left quarter, at every time
    features[1, 1, 1, 4:8, 4:8] = 8.0  # clip 1, channel 1: the bottom-right quarter, at one of 4 times
    head = BoxHead(3, 5, resolution=(2, 2), dropout=0.0)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(5, 3))  # logit a = channel a
        head.proj.bias.zero_()
    boxes = torch.tensor([[0, 0.0, 0.0, 0.5, 0.5], [1, 0.5, 0.5, 1.0, 1.0], [0, 0.5, 0.5, 1.0, 1.0]])
    logits = head(features, boxes)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(logits[:, :3], torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 0]]))  # 8 / 4 times


def test_box_loss_is_multi_label_bce():
    logits = torch.tensor([[0.0, 0.0]])
    assert box_loss(logits, torch.tensor([[1, 0]])).item() == torch.log(torch.tensor(2.0)).item()
    assert box_loss(torch.tensor([[20.0, -20.0]]), torch.tensor([[1, 0]])).item() < 1e-8  # both actions right
