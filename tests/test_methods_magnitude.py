"""Magnitude masks (atvprune.methods.magnitude)."""

import pytest
import torch

from atvprune.methods import magnitude_mask


def test_layer_rule_prunes_one_extra_without_ties():
    weight = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, 6.0]])
    # int(6 * 0.5) = 3 -> thr = sorted(|W|)[3] = 4 -> |W| <= 4 pruned: 4 weights
    mask = magnitude_mask(weight, 0.5)
    expected = torch.tensor([[True, True, True], [True, False, False]])
    assert torch.equal(mask, expected)
    assert int(mask.sum()) == int(weight.numel() * 0.5) + 1


def test_layer_rule_prunes_every_tie_at_threshold():
    weight = torch.tensor([[1.0, -2.0, 2.0], [2.0, 3.0, -4.0]])
    # int(6 * 0.34) = 2 -> thr = sorted([1, 2, 2, 2, 3, 4])[2] = 2 -> 4 pruned
    mask = magnitude_mask(weight, 0.34)
    expected = torch.tensor([[True, True, True], [True, False, False]])
    assert torch.equal(mask, expected)


def test_layer_rule_at_sparsity_zero_prunes_the_minimum_like_the_reference():
    weight = torch.tensor([[0.7, -2.0, 3.0], [-4.0, 5.0, 6.0]])
    mask = magnitude_mask(weight, 0.0)
    assert torch.equal(mask, weight.abs() == 0.7)
    assert int(mask.sum()) == 1
    # with a tie at the minimum, every minimal entry goes
    weight = torch.tensor([[0.5, -0.5, 3.0], [-4.0, 5.0, 6.0]])
    assert int(magnitude_mask(weight, 0.0).sum()) == 2


def test_layer_rule_competes_across_rows():
    weight = torch.tensor([[0.1, 0.2, 0.3, 0.4], [10.0, 20.0, 30.0, 40.0]])
    # int(8 * 0.25) = 2 -> thr = 0.3 -> row 0 loses 3 weights, row 1 none
    mask = magnitude_mask(weight, 0.25)
    assert mask.sum(dim=1).tolist() == [3, 0]


def test_per_row_rule_uses_absolute_value_and_exact_count():
    weight = torch.tensor([[-5.0, 1.0, -0.5, 2.0], [0.1, -0.2, 9.0, -9.0]])
    mask = magnitude_mask(weight, 0.5, per_row=True)
    expected = torch.tensor([[False, True, True, False], [True, True, False, False]])
    assert torch.equal(mask, expected)
    assert not magnitude_mask(weight, 0.0, per_row=True).any()


def test_nm_rule_prunes_n_smallest_abs_per_group():
    weight = torch.tensor([[-4.0, 1.0, -2.0, 3.0, 0.1, -0.2, 5.0, 6.0]])
    mask = magnitude_mask(weight, 0.5, prune_n=2, prune_m=4)
    expected = torch.tensor([[False, True, True, False, True, True, False, False]])
    assert torch.equal(mask, expected)


def test_nm_rule_ignores_sparsity():
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    first = magnitude_mask(weight, 0.0, prune_n=2, prune_m=4)
    second = magnitude_mask(weight, 0.9, prune_n=2, prune_m=4)
    assert torch.equal(first, second)
    assert (first.reshape(3, 4, 4).sum(dim=-1) == 2).all()


def test_bf16_weight_gives_bool_mask_of_same_shape():
    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(2)).bfloat16()
    mask = magnitude_mask(weight, 0.5)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert int(mask.sum()) >= 17


def test_bad_arguments_raise():
    weight = torch.randn(2, 8)
    with pytest.raises(ValueError, match="got 1.2"):
        magnitude_mask(weight, 1.2)
    with pytest.raises(ValueError, match="prune_n=3, prune_m=2"):
        magnitude_mask(weight, 0.5, prune_n=3, prune_m=2)
    with pytest.raises(ValueError, match=r"weight must be a 2-D \(out, in\) tensor"):
        magnitude_mask(torch.randn(8), 0.5)
