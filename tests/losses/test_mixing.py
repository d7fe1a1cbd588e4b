import pytest
import torch

from dalitrain.losses.mixing import mix_within_datasets, permutation_within_groups


def test_partners_stay_in_their_dataset():
    torch.manual_seed(0)
    dataset = torch.tensor([0, 1, 0, 2, 1, 0, 1, 0])
    for _ in range(20):
        partner = permutation_within_groups(dataset)
        assert torch.equal(dataset[partner], dataset)
        assert sorted(partner.tolist()) == list(range(8))  # a permutation


def test_every_partner_of_a_group_is_drawn():
    """Random within each group, not a fixed pairing: over draws, sample 0 meets every member of its group."""
    torch.manual_seed(1)
    dataset = torch.tensor([3, 1, 3, 3, 1])
    met = {int(permutation_within_groups(dataset)[0]) for _ in range(60)}
    assert met == {0, 2, 3}


def test_mixup_mixes_only_within_a_dataset():
    torch.manual_seed(1)
    dataset = torch.tensor([0, 0, 1, 1, 1, 2])
    label = torch.tensor([0, 1, 5, 6, 7, 3])
    # each sample's video is constant = its position, so the mix reveals its partner
    video = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1, 1).expand(6, 3, 2, 4, 4).contiguous()
    mixed, targets = mix_within_datasets(video, label, dataset, mixup_alpha=0.8, cutmix_alpha=0.0)
    lam = targets.lam[0].item()
    assert 0.0 <= lam <= 1.0 and torch.all(targets.lam == lam)
    for b in range(6):
        partner = label.tolist().index(targets.mixed[b].item())
        assert dataset[partner] == dataset[b]
        assert torch.allclose(mixed[b], lam * video[b] + (1 - lam) * video[partner])
    assert targets.mixed[5] == 3 and torch.allclose(mixed[5], video[5])  # alone in its dataset: unchanged


def test_cutmix_lam_is_the_kept_area():
    torch.manual_seed(2)
    dataset = torch.tensor([0, 0, 0, 0])
    video = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 2, 16, 16).contiguous()
    mixed, targets = mix_within_datasets(video, torch.arange(4), dataset, mixup_alpha=0.0, cutmix_alpha=1.0)
    for b in range(4):
        kept = (mixed[b, 0, 0] == b).float().mean().item()
        if targets.mixed[b] != b:
            assert abs(kept - targets.lam[b].item()) < 1e-6
            assert torch.equal(mixed[b, :, 0], mixed[b, :, 1])  # the same box through every frame


def test_no_alpha_is_identity():
    video = torch.randn(3, 3, 2, 4, 4)
    label = torch.tensor([1, 2, 0])
    mixed, targets = mix_within_datasets(video, label, torch.zeros(3, dtype=torch.long), mixup_alpha=0.0,
                                         cutmix_alpha=0.0)
    assert mixed is video and torch.equal(targets.mixed, label) and torch.all(targets.lam == 1)


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_rows_marked_alone_are_never_mixed(mixup, cutmix):
    torch.manual_seed(0)
    video = torch.randn(6, 3, 2, 8, 8)
    dataset = torch.tensor([0, 0, 1, 1, 1, 0])
    alone = dataset == 1  # localisation clips: their boxes would not survive mixing
    for _ in range(5):
        mixed, targets = mix_within_datasets(video, torch.arange(6), dataset, mixup_alpha=mixup,
                                             cutmix_alpha=cutmix, alone=alone)
        torch.testing.assert_close(mixed[alone], video[alone], rtol=0, atol=0)
        assert targets.mixed[alone].tolist() == [2, 3, 4]
        assert set(targets.mixed[~alone].tolist()) <= {0, 1, 5}
