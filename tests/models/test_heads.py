"""Per-dataset heads, the expander and the directed cross-dataset projections."""
import pytest
import torch

from dalitrain.models.heads import CrossDatasetProjection, Expander, classifier_head


@pytest.mark.parametrize("kind, num_params", [("linear", 16 * 5 + 5), ("mlp", 16 * 32 + 32 + 32 * 5 + 5)])
def test_classifier_head_shapes_and_sizes(kind, num_params):
    head = classifier_head(16, 5, kind, hidden_dim=32)
    assert head(torch.randn(3, 16)).shape == (3, 5)
    assert sum(p.numel() for p in head.parameters()) == num_params


def test_unknown_head_kind_is_refused():
    with pytest.raises(ValueError, match="unknown head 'conv'"):
        classifier_head(16, 5, "conv", hidden_dim=32)


def test_expander_maps_embed_to_hidden_and_back():
    expander = Expander(16, 64)
    assert expander.fc1.weight.shape == (64, 16) and expander.fc2.weight.shape == (16, 64)
    assert expander(torch.randn(4, 16)).shape == (4, 16)


def test_projection_maps_each_other_datasets_logits_through_bias_free_maps():
    classes = [3, 5, 2]
    projection = CrossDatasetProjection(classes)
    assert len(list(projection.parameters())) == 6  # one weight per ordered pair, no biases
    logits = [torch.randn(4, c) for c in classes]
    out = projection(logits)
    for k in range(3):
        sources = [i for i in range(3) if i != k]
        expected = [logits[i] @ projection.weight(i, k).T for i in sources]
        assert projection.weight(sources[0], k).shape == (classes[k], classes[sources[0]])
        torch.testing.assert_close(out.per_source[k], expected)
        torch.testing.assert_close(out.summed(k), expected[0] + expected[1])
    l1 = sum(projection.weight(i, k).abs().sum() for i in range(3) for k in range(3) if i != k)
    torch.testing.assert_close(out.l1, l1)


def test_a_projection_needs_two_datasets():
    with pytest.raises(ValueError, match="two datasets or more, got 1"):
        CrossDatasetProjection([4])


def test_projection_has_no_self_map_and_checks_the_number_of_datasets():
    projection = CrossDatasetProjection([3, 5])
    with pytest.raises(ValueError, match="to itself"):
        projection.weight(1, 1)
    with pytest.raises(ValueError, match="1 logits tensors for 2 datasets"):
        projection([torch.randn(2, 3)])


def test_projection_starts_small_and_random_so_projected_logits_start_at_the_originals():
    torch.manual_seed(0)
    projection = CrossDatasetProjection([12, 4, 7])
    weights = torch.cat([projection.weight(i, k).flatten() for i in range(3) for k in range(3) if i != k])
    assert weights.abs().max() <= 2 * CrossDatasetProjection.INIT_STD and weights.std() > 0.5e-3
    assert len(set(weights.tolist())) == weights.numel()  # no ties: every class pair has a rank
    logits = [torch.randn(5, c) * 3 for c in (12, 4, 7)]
    for k, original in enumerate(logits):
        assert projection(logits).summed(k).abs().max() < 0.01 * original.abs().max()
