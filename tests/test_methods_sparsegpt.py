"""SparseGPT Hessian and OBS pruning (atvprune.methods.sparsegpt)."""

import pytest
import torch

from atvprune.methods import (
    RunningHessian,
    hessian,
    nm_mask_from_score,
    sparsegpt_prune,
)


def _random_case(rows=5, columns=12, tokens=(20, 9, 14), seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, columns, generator=generator)
    samples = [torch.randn(t, columns, generator=generator) for t in tokens]
    return weight, samples


def _slow_obs(weight, H, sparsity, blocksize, percdamp=0.01, prune_n=0, prune_m=0):
    """Plain sequential OBS in float64 with explicit inverses (no Cholesky tricks).

    For column j the free columns are F = {j, ..., in-1}; with Hinv_F = inv(H[F, F]):
    score_j = w_j^2 / Hinv_F[0, 0]; after choosing q_j (0 if pruned, else w_j)
    W[:, F] -= ((w_j - q_j) / Hinv_F[0, 0]) outer Hinv_F[0, :].
    Masks are chosen per block from the weights at the block start (unstructured)
    or per group of M columns from the weights at the group start (N:M).
    """
    W = weight.double().clone()
    H = H.double().clone()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    for j in torch.nonzero(dead).flatten().tolist():
        H[j, j] = 1.0
        W[:, j] = 0.0
    H = H + percdamp * torch.diag(H).mean() * torch.eye(columns, dtype=torch.float64)
    free_inverse = [torch.linalg.inv(H[j:, j:]) for j in range(columns)]
    hinv_diagonal = torch.tensor([free_inverse[j][0, 0] for j in range(columns)])

    mask = torch.zeros(W.shape, dtype=torch.bool)
    for start in range(0, columns, blocksize):
        stop = min(start + blocksize, columns)
        if prune_n == 0:
            score = W[:, start:stop] ** 2 / hinv_diagonal[start:stop]
            values = torch.sort(score.flatten()).values
            mask[:, start:stop] = score <= values[int(score.numel() * sparsity)]
        for j in range(start, stop):
            if prune_n != 0 and (j - start) % prune_m == 0:
                group = slice(j, j + prune_m)
                score = W[:, group] ** 2 / hinv_diagonal[group]
                mask[:, group] = nm_mask_from_score(score, prune_n, prune_m)
            w = W[:, j].clone()
            q = torch.where(mask[:, j], torch.zeros_like(w), w)
            inverse = free_inverse[j]
            W[:, j:] -= torch.outer((w - q) / inverse[0, 0], inverse[0, :])
            W[:, j] = q
    return W, mask


def test_running_hessian_hand_values():
    running = RunningHessian(2)
    running.add(torch.tensor([[1.0, 2.0]]))
    # sqrt(2/n) scaling then the product: equal up to fp32 rounding
    assert torch.allclose(running.value, torch.tensor([[2.0, 4.0], [4.0, 8.0]]))
    running.add(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # H = (2/2) * ([[1, 2], [2, 4]] + I)
    assert torch.allclose(running.value, torch.tensor([[2.0, 2.0], [2.0, 5.0]]))
    assert running.count == 2 and running.value.dtype == torch.float32


def test_hessian_is_two_over_n_sum_xtx():
    _, samples = _random_case()
    expected = 2 / len(samples) * sum(x.double().T @ x.double() for x in samples)
    assert torch.allclose(hessian(samples).double(), expected, rtol=1e-5, atol=1e-5)


def test_running_hessian_batch_counts_batch_size():
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    running = RunningHessian(5)
    running.add(x)
    flat = x.reshape(-1, 5)
    assert running.count == 3
    assert torch.allclose(running.value, 2 / 3 * flat.T @ flat, atol=1e-5)


def test_sparsity_zero_leaves_weight_unchanged():
    weight, samples = _random_case()
    H = hessian(samples)
    new_weight, mask = sparsegpt_prune(weight, H, 0.0, blocksize=4)
    assert torch.equal(new_weight, weight)
    assert new_weight is not weight
    assert mask.dtype == torch.bool and not mask.any()
    bf16 = weight.bfloat16()
    new_bf16, _ = sparsegpt_prune(bf16, H, 0.0)
    assert new_bf16.dtype == torch.bfloat16 and torch.equal(new_bf16, bf16)


def test_pruned_entries_are_zero_and_block_counts_follow_the_rule():
    weight, samples = _random_case(rows=6, columns=20)
    new_weight, mask = sparsegpt_prune(weight, hessian(samples), 0.5, blocksize=8)
    assert (new_weight[mask] == 0).all()
    # blocks of 8, 8 and 4 columns: int(rows * width * s) + 1 pruned each
    counts = [int(mask[:, a:b].sum()) for a, b in ((0, 8), (8, 16), (16, 20))]
    assert counts == [int(6 * 8 * 0.5) + 1, int(6 * 8 * 0.5) + 1, int(6 * 4 * 0.5) + 1]
    assert torch.equal(new_weight == 0, mask)  # random case: no other exact zero


def test_matches_slow_sequential_obs_unstructured():
    weight, samples = _random_case()
    H = hessian(samples)
    new_weight, mask = sparsegpt_prune(weight, H, 0.6, blocksize=4)
    expected_weight, expected_mask = _slow_obs(weight, H, 0.6, blocksize=4)
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(new_weight.double(), expected_weight, atol=1e-4)
    assert not torch.allclose(new_weight, weight.masked_fill(mask, 0), atol=1e-3)


def test_matches_slow_sequential_obs_single_block_and_ragged_blocks():
    weight, samples = _random_case(rows=4, columns=10, seed=5)
    H = hessian(samples)
    for blocksize in (128, 3):
        new_weight, mask = sparsegpt_prune(weight, H, 0.5, blocksize=blocksize)
        expected_weight, expected_mask = _slow_obs(weight, H, 0.5, blocksize=blocksize)
        assert torch.equal(mask, expected_mask)
        assert torch.allclose(new_weight.double(), expected_weight, atol=1e-4)


def test_matches_slow_sequential_obs_two_of_four():
    weight, samples = _random_case(rows=5, columns=16, seed=2)
    H = hessian(samples)
    new_weight, mask = sparsegpt_prune(
        weight, H, 0.5, prune_n=2, prune_m=4, blocksize=8
    )
    expected_weight, expected_mask = _slow_obs(
        weight, H, 0.5, blocksize=8, prune_n=2, prune_m=4
    )
    assert torch.equal(mask, expected_mask)
    assert (mask.reshape(5, 4, 4).sum(dim=-1) == 2).all()
    assert (new_weight[mask] == 0).all()
    assert torch.allclose(new_weight.double(), expected_weight, atol=1e-4)


def test_dead_column_is_zeroed_and_masked():
    weight, samples = _random_case(rows=4, columns=8, seed=3)
    for sample in samples:
        sample[:, 2] = 0.0
    H = hessian(samples)
    assert H[2, 2] == 0
    new_weight, mask = sparsegpt_prune(weight, H, 0.25, blocksize=4)
    assert (new_weight[:, 2] == 0).all()
    assert mask[:, 2].all()
    expected_weight, expected_mask = _slow_obs(weight, H, 0.25, blocksize=4)
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(new_weight.double(), expected_weight, atol=1e-4)


def test_returns_input_dtype_and_leaves_inputs_untouched():
    weight, samples = _random_case()
    H = hessian(samples)
    H_before, weight_bf16 = H.clone(), weight.bfloat16()
    new_weight, mask = sparsegpt_prune(weight_bf16, H, 0.5, blocksize=4)
    assert new_weight.dtype == torch.bfloat16
    assert (new_weight[mask] == 0).all()
    assert torch.equal(H, H_before)
    assert torch.equal(weight_bf16, weight.bfloat16())


def test_bad_arguments_raise():
    weight, samples = _random_case()
    H = hessian(samples)
    with pytest.raises(ValueError, match=r"hessian must have shape \(12, 12\)"):
        sparsegpt_prune(weight, H[:5, :5], 0.5)
    with pytest.raises(ValueError, match="blocksize=6, prune_m=4"):
        sparsegpt_prune(weight, H, 0.5, prune_n=2, prune_m=4, blocksize=6)
    with pytest.raises(
        ValueError, match="percdamp must be a real number >= 0, got -0.1"
    ):
        sparsegpt_prune(weight, H, 0.5, percdamp=-0.1)
    with pytest.raises(ValueError, match="blocksize must be a positive int, got 0"):
        sparsegpt_prune(weight, H, 0.5, blocksize=0)
    with pytest.raises(ValueError, match="got 1.0"):
        sparsegpt_prune(weight, H, 1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        sparsegpt_prune(weight, -torch.eye(12), 0.5, percdamp=0.0)
    with pytest.raises(ValueError, match="expected in_features=12"):
        RunningHessian(12).add(torch.randn(3, 5))
