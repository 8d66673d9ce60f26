"""Shared mask rules and validation (atvprune.methods.masks)."""

import math

import pytest
import torch

from atvprune.methods import (
    check_nm,
    check_sparsity,
    nm_mask_from_score,
    row_mask_from_score,
)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_check_sparsity_accepts_zero_to_below_one(value):
    assert check_sparsity(value) == float(value)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, math.nan, math.inf])
def test_check_sparsity_rejects_out_of_range(value):
    with pytest.raises(
        ValueError, match=f"sparsity must be in \\[0, 1\\), got {value}"
    ):
        check_sparsity(value)


@pytest.mark.parametrize("value", [True, "0.5", None])
def test_check_sparsity_rejects_non_numbers(value):
    with pytest.raises(ValueError, match=repr(value)):
        check_sparsity(value)


def test_check_nm_unstructured_and_valid():
    assert check_nm(0, 0, 7) is False
    assert check_nm(2, 4, 8) is True
    assert check_nm(4, 8, 16) is True


@pytest.mark.parametrize(
    ("n", "m", "in_features", "message"),
    [
        (0, 4, 8, "prune_n=0, prune_m=4"),
        (4, 4, 8, "prune_n=4, prune_m=4"),
        (3, 2, 8, "prune_n=3, prune_m=2"),
        (-1, 4, 8, "prune_n=-1, prune_m=4"),
        (2, 4, 6, "in_features=6, prune_m=4"),
        (2.0, 4, 8, "prune_n=2.0"),
        (2, 4, 0, "in_features must be a positive integer, got 0"),
    ],
)
def test_check_nm_rejects_bad_settings(n, m, in_features, message):
    with pytest.raises(ValueError, match=message):
        check_nm(n, m, in_features)


def test_row_mask_prunes_smallest_per_row():
    score = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.5, 0.4, 0.3, 0.2]])
    mask = row_mask_from_score(score, 0.5)
    expected = torch.tensor([[False, True, False, True], [False, False, True, True]])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_row_mask_ties_prune_lower_index_first():
    score = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 2.0, 1.0]])
    mask = row_mask_from_score(score, 0.5)
    expected = torch.tensor([[True, True, False, False], [False, True, False, True]])
    assert torch.equal(mask, expected)
    # one of two tied values at the cut: the lower index goes
    mask = row_mask_from_score(torch.tensor([[5.0, 1.0, 1.0, 0.0]]), 0.5)
    assert torch.equal(mask, torch.tensor([[False, True, False, True]]))


def test_row_mask_count_is_python_int_of_float_product():
    # int(3584 * 0.6) = int(2150.4) = 2150
    mask = row_mask_from_score(
        torch.rand(2, 3584, generator=torch.Generator().manual_seed(0)), 0.6
    )
    assert mask.sum(dim=1).tolist() == [2150, 2150]
    # 100 * 0.29 == 28.999999999999996 in floating point, so int() gives 28
    assert int(100 * 0.29) == 28
    mask = row_mask_from_score(torch.arange(100.0).repeat(3, 1), 0.29)
    assert mask.sum(dim=1).tolist() == [28, 28, 28]
    assert mask[:, :28].all() and not mask[:, 28:].any()


def test_row_mask_sparsity_zero_prunes_nothing():
    assert not row_mask_from_score(torch.randn(3, 5), 0.0).any()


def test_row_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="got 1.0"):
        row_mask_from_score(torch.randn(2, 4), 1.0)
    with pytest.raises(ValueError, match=r"score must be a 2-D \(out, in\) tensor"):
        row_mask_from_score(torch.randn(4), 0.5)


def test_nm_mask_two_of_four():
    score = torch.tensor([[4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0]])
    mask = nm_mask_from_score(score, 2, 4)
    expected = torch.tensor([[False, False, True, True, True, True, False, False]])
    assert torch.equal(mask, expected)


def test_nm_mask_ties_prune_lower_index_first():
    score = torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 2.0, 0.0]])
    mask = nm_mask_from_score(score, 2, 4)
    expected = torch.tensor([[True, True, False, False, False, True, False, True]])
    assert torch.equal(mask, expected)
    # 3 equal smallest values, N = 2: the two lower indices go
    mask = nm_mask_from_score(torch.tensor([[7.0, 0.5, 0.5, 0.5]]), 2, 4)
    assert torch.equal(mask, torch.tensor([[False, True, True, False]]))


def test_nm_mask_four_of_eight_counts_per_group():
    score = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    mask = nm_mask_from_score(score, 4, 8)
    groups = mask.reshape(5, 4, 8)
    assert (groups.sum(dim=-1) == 4).all()
    # every pruned score is <= every kept score inside its group
    values = score.reshape(5, 4, 8)
    pruned_max = values.masked_fill(~groups, -math.inf).amax(dim=-1)
    kept_min = values.masked_fill(groups, math.inf).amin(dim=-1)
    assert (pruned_max <= kept_min).all()


def test_nm_mask_rejects_bad_settings():
    with pytest.raises(ValueError, match="in_features=6, prune_m=4"):
        nm_mask_from_score(torch.randn(2, 6), 2, 4)
    with pytest.raises(ValueError, match="prune_n > 0"):
        nm_mask_from_score(torch.randn(2, 8), 0, 0)
