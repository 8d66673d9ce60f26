"""ATV-Pruning selection and statistic (atvprune.methods.atv)."""

import pytest
import torch

from atvprune.methods import (
    atv_budget,
    atv_scaler_row,
    atv_select,
    atv_select_from_drifts,
    calibration_tokens,
    fixed_ratio_budget,
    random_visual_indices,
    scaler_row,
    text_only_indices,
    top_drift_indices,
    visual_drift,
    visual_only_tokens,
)


def _mask(pattern: str) -> torch.Tensor:
    """'tvtv' -> tensor([False, True, False, True]) (v = visual token)."""
    return torch.tensor([char == "v" for char in pattern])


def test_visual_drift_hand_values():
    x_in = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    x_out = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    drift = visual_drift(x_in, x_out)
    # same direction 0, orthogonal 1, opposite 2, zero vector (eps) -> cos 0 -> 1
    assert torch.allclose(drift, torch.tensor([0.0, 1.0, 2.0, 1.0]))


def test_visual_drift_keeps_input_dtype():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0)).bfloat16()
    assert visual_drift(x, x.flip(0)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"same shape, got \(5, 8\) and \(4, 8\)"):
        visual_drift(x, x[:4])


def test_atv_budget_rounds_half_to_even():
    assert atv_budget(0.5, 1.0, n_text=5, n_img=10) == 2  # round(2.5) = 2
    assert atv_budget(0.5, 1.0, n_text=7, n_img=10) == 4  # round(3.5) = 4
    assert atv_budget(0.25, 2.0, n_text=5, n_img=10) == 2  # alpha * avg = 0.5


def test_atv_budget_caps():
    assert atv_budget(0.5, 1.0, n_text=7, n_img=3) == 3  # capped by n_img
    assert atv_budget(0.9, 4.0, n_text=10, n_img=100) == 10  # min(1, 3.6) = 1
    assert atv_budget(0.9, 0.0, n_text=10, n_img=100) == 0  # alpha 0: text-only
    assert atv_budget(-0.001, 1.0, n_text=10_000, n_img=100) == 0  # clamped at 0


def test_atv_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
        atv_budget(0.5, -1, 5, 5)
    with pytest.raises(ValueError, match="mean_drift must be a finite number, got nan"):
        atv_budget(float("nan"), 1.0, 5, 5)
    with pytest.raises(ValueError, match="n_text must be a non-negative int, got -2"):
        atv_budget(0.5, 1.0, -2, 5)
    with pytest.raises(ValueError, match="n_img must be a non-negative int, got 1.5"):
        atv_budget(0.5, 1.0, 2, 1.5)


def test_select_from_drifts_half_to_even_and_top_k():
    # all binary fractions: the fp32 mean over the 7 visual tokens is exactly 0.5
    drift_a = torch.tensor([0.25, 0.75])
    drift_b = torch.tensor([0.875, 0.125, 0.625, 0.375, 0.5])
    mean_drift, k_list, index_list = atv_select_from_drifts(
        [drift_a, drift_b], [5, 7], alpha=1.0
    )
    assert mean_drift == 0.5
    assert k_list == [2, 4]  # round(2.5) = 2, round(3.5) = 4
    assert index_list[0].tolist() == [0, 1]
    assert index_list[1].tolist() == [0, 2, 3, 4]  # top-4 drifts, sorted ascending
    assert index_list[1].dtype == torch.long


def test_select_from_drifts_mean_is_token_weighted():
    drift_a = torch.tensor([0.0])
    drift_b = torch.tensor([1.0, 1.0, 1.0])
    mean_drift, _, _ = atv_select_from_drifts([drift_a, drift_b], [4, 4], alpha=1.0)
    assert mean_drift == 0.75  # a mean of per-sample means would be 0.5
    assert isinstance(mean_drift, float)


def test_select_from_drifts_samples_without_visual_tokens():
    empty = torch.zeros(0)
    mean_drift, k_list, index_list = atv_select_from_drifts(
        [empty, torch.tensor([0.5, 0.5])], [6, 4], alpha=1.0
    )
    assert mean_drift == 0.5 and k_list == [0, 2]
    assert index_list[0].numel() == 0 and index_list[0].dtype == torch.long
    mean_drift, k_list, index_list = atv_select_from_drifts([empty, empty], [3, 2], 1.0)
    assert mean_drift == 0.0 and k_list == [0, 0]
    assert all(index.numel() == 0 for index in index_list)


def test_select_from_drifts_rejects_mismatched_lengths():
    with pytest.raises(
        ValueError, match="drift_list has 2 samples but n_text_list has 1"
    ):
        atv_select_from_drifts([torch.ones(1), torch.ones(2)], [3], 1.0)


def test_atv_select_uses_visual_drifts_within_image_subsequence():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # sample 0: tokens t v t v v; visual drifts 0, 1, 2 (same, orthogonal, opposite)
    x_in_0 = torch.tensor([e1, e1, e2, e1, e1])
    x_out_0 = torch.tensor([e2, e1, e1, e2, [-1.0, 0.0]])
    mask_0 = _mask("tvtvv")
    # sample 1: tokens v t t t; visual drift 1
    x_in_1 = torch.tensor([e1, e1, e1, e1])
    x_out_1 = torch.tensor([e2, e1, e1, e1])
    mask_1 = _mask("vttt")
    mean_drift, k_list, index_list = atv_select(
        [x_in_0, x_in_1], [x_out_0, x_out_1], [mask_0, mask_1], alpha=1.0
    )
    # drifts 0, 1, 2, 1 -> mean 1 -> k = min(n_img, round(1 * n_text))
    assert mean_drift == pytest.approx(1.0)
    assert k_list == [2, 1]
    assert index_list[0].tolist() == [1, 2]  # positions within the 3 visual tokens
    assert index_list[1].tolist() == [0]
    # the same answer from the lower-level entry point
    drifts = [
        visual_drift(x_in_0[mask_0], x_out_0[mask_0]),
        visual_drift(x_in_1[mask_1], x_out_1[mask_1]),
    ]
    low_level = atv_select_from_drifts(drifts, [2, 3], 1.0)
    assert low_level[0] == mean_drift and low_level[1] == k_list


def test_atv_select_accepts_batch_of_one_and_checks_shapes():
    x = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(0))
    mask = _mask("ttvvvt").unsqueeze(0)
    mean_drift, k_list, _ = atv_select([x], [x * 2], [mask], alpha=1.0)
    assert mean_drift == pytest.approx(0.0, abs=1e-6) and k_list == [0]
    with pytest.raises(ValueError, match=r"image_mask shape \(5,\) does not match"):
        atv_select([x[0]], [x[0]], [_mask("ttvvv")], alpha=1.0)
    with pytest.raises(ValueError, match="got 1 inputs, 2 outputs"):
        atv_select([x], [x, x], [mask], alpha=1.0)


def test_top_drift_indices_ties_prefer_lower_index():
    drift = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert top_drift_indices(drift, 1).tolist() == [1]
    assert top_drift_indices(drift, 2).tolist() == [1, 2]
    assert top_drift_indices(drift, 4).tolist() == [1, 2, 3, 4]
    empty = top_drift_indices(drift, 0)
    assert empty.numel() == 0 and empty.dtype == torch.long
    with pytest.raises(ValueError, match="k=6 exceeds the number of visual tokens 5"):
        top_drift_indices(drift, 6)


def test_calibration_tokens_text_first_then_selected_visual():
    x = torch.arange(12.0).reshape(6, 2)  # row r = [2r, 2r+1]
    mask = _mask("tvvtvt")  # visual rows 1, 2, 4
    tokens = calibration_tokens(x, mask, torch.tensor([2, 0]))
    assert torch.equal(tokens, x[[0, 3, 5, 4, 1]])
    assert torch.equal(calibration_tokens(x, mask, text_only_indices()), x[[0, 3, 5]])
    batched = calibration_tokens(x.unsqueeze(0), mask.unsqueeze(0), torch.tensor([1]))
    assert torch.equal(batched, x[[0, 3, 5, 2]])
    # hook input with a batch of one and a 1-D mask (the official inp[0])
    hook_input = calibration_tokens(x.unsqueeze(0), mask, torch.tensor([1]))
    assert torch.equal(hook_input, x[[0, 3, 5, 2]])
    with pytest.raises(ValueError, match=r"image_mask shape \(5,\) does not match"):
        calibration_tokens(x, mask[:5], torch.tensor([0]))
    with pytest.raises(ValueError, match=r"visual_index values must be in \[0, 3\)"):
        calibration_tokens(x, mask, torch.tensor([3]))


def test_visual_only_tokens():
    x = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(visual_only_tokens(x, _mask("tvvtvt")), x[[1, 2, 4]])
    assert torch.equal(visual_only_tokens(x[None], _mask("tvvtvt")), x[[1, 2, 4]])


def test_atv_scaler_row_hand_values():
    x_0 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # t v v
    x_1 = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # v t
    value = atv_scaler_row(
        [x_0, x_1],
        [_mask("tvv"), _mask("vt")],
        [torch.tensor([1]), text_only_indices()],
    )
    # sample 0 tokens [1,0],[3,0] -> [10, 0]; sample 1 token [2,2] -> [4, 4]
    assert torch.allclose(value, torch.tensor([7.0, 2.0]), rtol=1e-6)
    assert value.dtype == torch.float32


def _random_samples(seed=0):
    generator = torch.Generator().manual_seed(seed)
    patterns = ["ttvvvvtt", "tvvvvvvvvvttttt", "ttttv", "vvtt"]
    samples = [torch.randn(len(p), 6, generator=generator) for p in patterns]
    return samples, [_mask(p) for p in patterns]


def test_alpha_zero_equals_text_only_wanda():
    samples, masks = _random_samples()
    outputs = [sample.flip(0) for sample in samples]
    _, k_list, index_list = atv_select(samples, outputs, masks, alpha=0.0)
    assert k_list == [0, 0, 0, 0]
    value = atv_scaler_row(samples, masks, index_list)
    text_only = scaler_row(
        [sample[~mask] for sample, mask in zip(samples, masks, strict=True)]
    )
    assert torch.equal(value, text_only)


def test_every_visual_token_selected_equals_wanda_on_all_tokens():
    samples, masks = _random_samples(seed=1)
    every = [torch.arange(int(mask.sum())) for mask in masks]
    value = atv_scaler_row(samples, masks, every)
    assert torch.allclose(value, scaler_row(samples), rtol=1e-6)
    # a large alpha selects min(n_img, n_text) visual tokens per sample
    outputs = [-sample for sample in samples]  # drift 2 everywhere
    _, k_list, _ = atv_select(samples, outputs, masks, alpha=8.0)
    assert k_list == [4, 6, 1, 2]


def test_fixed_ratio_budget():
    assert fixed_ratio_budget(n_text=5, n_img=100, ratio=0.5) == 2  # round(2.5)
    assert fixed_ratio_budget(n_text=7, n_img=100, ratio=0.5) == 4  # round(3.5)
    assert fixed_ratio_budget(n_text=7, n_img=3, ratio=0.5) == 3
    assert fixed_ratio_budget(n_text=40, n_img=100, ratio=0.1) == 4
    with pytest.raises(
        ValueError, match="ratio must be a finite number >= 0, got -0.1"
    ):
        fixed_ratio_budget(5, 5, -0.1)


def test_random_visual_indices_seeded_sorted_distinct():
    generator = torch.Generator().manual_seed(21)
    first = random_visual_indices(50, 10, generator)
    second = random_visual_indices(50, 10, generator)  # fresh draw per layer
    assert first.dtype == torch.long
    assert first.tolist() == sorted(set(first.tolist()))
    assert 0 <= int(first.min()) and int(first.max()) < 50
    assert not torch.equal(first, second)
    again = random_visual_indices(50, 10, torch.Generator().manual_seed(21))
    assert torch.equal(first, again)
    assert random_visual_indices(5, 0, generator).numel() == 0
    assert random_visual_indices(5, 5, generator).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="k=6 exceeds n_img=5"):
        random_visual_indices(5, 6, generator)


def test_text_only_indices_is_empty_long():
    index = text_only_indices()
    assert index.numel() == 0 and index.dtype == torch.long
