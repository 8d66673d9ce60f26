"""Wanda statistic, score and masks (atvprune.methods.wanda)."""

import pytest
import torch

from atvprune.methods import RunningScaler, scaler_row, wanda_mask, wanda_score


def test_running_scaler_hand_values():
    scaler = RunningScaler(2)
    scaler.add(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))  # sums of squares [10, 4]
    assert scaler.count == 1
    assert torch.allclose(scaler.value, torch.tensor([10.0, 4.0]), rtol=1e-6)
    scaler.add(torch.tensor([[2.0, 2.0]]))  # [4, 4]
    assert scaler.count == 2
    assert torch.allclose(scaler.value, torch.tensor([7.0, 4.0]), rtol=1e-6)
    assert scaler.value.dtype == torch.float32


def test_running_scaler_unit_weights_the_mean():
    scaler = RunningScaler(1)
    scaler.add(torch.tensor([[2.0], [2.0], [2.0]]), unit=3)  # 12 / 3 = 4
    assert torch.allclose(scaler.value, torch.tensor([4.0]), rtol=1e-6)
    scaler.add(torch.tensor([[2.0]]), unit=1)  # (12 + 4) / 4 = 4
    assert torch.allclose(scaler.value, torch.tensor([4.0]), rtol=1e-6)
    assert scaler.count == 4


def test_running_scaler_batch_input_defaults_to_batch_size_units():
    x = torch.tensor([[[1.0], [1.0]], [[3.0], [0.0]]])  # (B=2, T=2, in=1)
    scaler = RunningScaler(1)
    scaler.add(x)
    assert scaler.count == 2
    # ||.||^2 via sqrt then square: equal up to fp32 rounding
    assert torch.allclose(scaler.value, torch.tensor([(1 + 1 + 9) / 2]), rtol=1e-6)


def test_running_scaler_casts_to_fp32_before_squaring():
    x = torch.tensor([[300.0, 1.0]], dtype=torch.float16)
    assert torch.isinf(x**2).any()  # 300^2 = 90000 > fp16 max 65504
    scaler = RunningScaler(2)
    scaler.add(x)
    assert scaler.value.dtype == torch.float32
    assert torch.allclose(scaler.value, torch.tensor([90000.0, 1.0]), rtol=1e-6)


def test_scaler_row_is_mean_over_samples_of_token_sums():
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randn(length, 6, generator=generator) for length in (3, 9, 1, 5)]
    expected = sum((sample**2).sum(dim=0) for sample in samples) / len(samples)
    assert torch.allclose(scaler_row(samples), expected, rtol=1e-6)


def test_scaler_row_longer_sample_counts_more():
    short = torch.ones(1, 1)
    long = torch.ones(3, 1)
    assert torch.allclose(scaler_row([short, long]), torch.tensor([2.0]), rtol=1e-6)


def test_wanda_score_is_abs_weight_times_sqrt_scaler_in_fp32():
    weight = torch.tensor([[1.0, -2.0], [3.0, 4.0]], dtype=torch.bfloat16)
    score = wanda_score(weight, torch.tensor([4.0, 0.0]))
    assert score.dtype == torch.float32
    assert torch.equal(score, torch.tensor([[2.0, 0.0], [6.0, 0.0]]))


def test_wanda_mask_hand_case():
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, -3.0, 2.0, -1.0]])
    scaler = torch.tensor([1.0, 4.0, 1.0, 4.0])
    # S = [[1, 4, 3, 8], [4, 6, 2, 2]]; row 1 ties at 2 keep index order
    mask = wanda_mask(weight, scaler, 0.5)
    expected = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert torch.equal(mask, expected)


def test_wanda_mask_dead_input_goes_first():
    weight = torch.tensor([[100.0, 1.0, 2.0], [-50.0, 3.0, 0.5]])
    scaler = torch.tensor([0.0, 1.0, 1.0])
    mask = wanda_mask(weight, scaler, 0.34)  # int(3 * 0.34) = 1 per row
    expected = torch.tensor([[True, False, False], [True, False, False]])
    assert torch.equal(mask, expected)


def test_wanda_mask_nm():
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0, 8.0, 1.0, 1.0, 8.0]])
    scaler = torch.tensor([9.0, 1.0, 4.0, 16.0, 1.0, 1.0, 4.0, 1.0])
    # S = [3, 1, 2, 4 | 8, 1, 2, 8] -> prune {1, 2} and {5, 6}
    mask = wanda_mask(weight, scaler, 0.5, prune_n=2, prune_m=4)
    expected = torch.tensor([[False, True, True, False, False, True, True, False]])
    assert torch.equal(mask, expected)


def test_wanda_mask_exact_count_per_row_on_random_case():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(7, 50, generator=generator)
    scaler = torch.rand(50, generator=generator)
    mask = wanda_mask(weight, scaler, 0.6)
    assert mask.sum(dim=1).tolist() == [30] * 7
    score = wanda_score(weight, scaler)
    pruned_max = score.masked_fill(~mask, -1).amax(dim=1)
    kept_min = score.masked_fill(mask, float("inf")).amin(dim=1)
    assert (pruned_max <= kept_min).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="expected in_features=3"):
        RunningScaler(3).add(torch.randn(2, 4))
    with pytest.raises(ValueError, match="unit must be a positive int, got 0"):
        RunningScaler(3).add(torch.randn(2, 3), unit=0)
    with pytest.raises(
        ValueError, match=r"scaler_row must have shape \(4,\), got \(3,\)"
    ):
        wanda_mask(torch.randn(2, 4), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="at least one"):
        scaler_row([])
    with pytest.raises(ValueError, match="got 1.0"):
        wanda_mask(torch.randn(2, 4), torch.ones(4), 1.0)
