"""TAMP attention score, AMIA selection and DAS budget (atvprune.methods.tamp)."""

import math

import pytest
import torch

from atvprune.methods import (
    amia_select,
    das_allocate,
    das_keep_counts,
    das_score,
    last_token_attention,
    modality_density,
)

# --- last-token attention -------------------------------------------------------


def _full_causal_attention_last_row(query, key, groups):
    """Straightforward reference: full QK^T, explicit causal mask, last row."""
    heads, length, head_dim = query.shape
    key = torch.stack([key[h // groups] for h in range(heads)])
    logits = query @ key.transpose(1, 2) / math.sqrt(head_dim)
    future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    logits = logits.masked_fill(future, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits.float(), dim=-1).to(query.dtype)
    return torch.nan_to_num(weights, nan=0.0).mean(dim=0)[-1]


def test_last_token_attention_hand_values():
    query = torch.tensor([[[5.0], [1.0]]])  # 1 head, L = 2, d = 1
    key = torch.tensor([[[0.0], [math.log(3.0)]]])
    # last query 1 -> logits [0, ln 3] -> softmax [1/4, 3/4]; query 0 is irrelevant
    score = last_token_attention(query, key, num_key_value_groups=1)
    assert torch.allclose(score, torch.tensor([0.25, 0.75]))


def test_last_token_attention_matches_full_masked_computation_with_gqa():
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(4, 7, 8, generator=generator)
    key = torch.randn(2, 7, 8, generator=generator)
    score = last_token_attention(query, key, num_key_value_groups=2)
    expected = _full_causal_attention_last_row(query, key, groups=2)
    assert score.shape == (7,)
    assert torch.allclose(score, expected, atol=1e-6)
    assert torch.allclose(score.sum(), torch.tensor(1.0))


def test_last_token_attention_repeats_kv_heads_interleaved():
    # heads 0,1 must use kv head 0 and heads 2,3 kv head 1 (not 0,1,0,1)
    query = torch.zeros(4, 2, 1)
    query[:, -1, 0] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    key = torch.tensor([[[0.0], [10.0]], [[0.0], [-10.0]]])
    score = last_token_attention(query, key, num_key_value_groups=2)
    # every head puts ~all weight on token 1 (logit +10 vs 0)
    assert score[1] > 0.99
    tiled = _full_causal_attention_last_row(query, key[[0, 1, 0, 1]], groups=1)
    assert tiled[1] == pytest.approx(0.5, abs=1e-3)  # what a tiled repeat would give


def test_last_token_attention_nan_becomes_zero_and_dtype_kept():
    query = torch.full((2, 3, 4), float("nan"))
    score = last_token_attention(query, torch.randn(2, 3, 4), 1)
    assert torch.equal(score, torch.zeros(3))
    bf16 = last_token_attention(
        torch.randn(2, 3, 4).bfloat16(), torch.randn(1, 3, 4).bfloat16(), 2
    )
    assert bf16.dtype == torch.bfloat16


def test_last_token_attention_rejects_bad_shapes():
    with pytest.raises(ValueError, match="num_key_value_groups=3"):
        last_token_attention(torch.randn(4, 3, 2), torch.randn(2, 3, 2), 3)
    with pytest.raises(ValueError, match="num_key_value_groups must be a positive int"):
        last_token_attention(torch.randn(4, 3, 2), torch.randn(2, 3, 2), 0)


# --- density ----------------------------------------------------------------------


def test_modality_density_hand_case():
    s = 1 / math.sqrt(2)
    # visual: e1, e2, (e1+e2) scaled by 3 (scale must not matter); text: e1, 2*e1
    Y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [1.0, 0.0], [2.0, 0.0]])
    mask = torch.tensor([True, True, True, False, False])
    density = modality_density(Y, mask)
    # visual pairs: 0 (excluded, not > 0), s, s -> m_vv = s
    assert density.m_vv == pytest.approx(s)
    assert density.m_tt == pytest.approx(1.0)
    # visual x text: rows e1 -> 1, 1; e2 -> 0, 0; u -> s, s
    assert density.m_vt == pytest.approx((2 + 0 + 2 * s) / 6)
    assert density.rho == pytest.approx((s + 1.0 + (2 + 2 * s) / 6) / 3)


def test_modality_density_empty_sets_are_nan():
    Y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    one_visual = modality_density(Y, torch.tensor([True, False, False]))
    assert math.isnan(one_visual.m_vv) and math.isnan(one_visual.rho)
    assert one_visual.m_tt == pytest.approx(1 / math.sqrt(2))
    no_text = modality_density(Y, torch.tensor([True, True, True]))
    assert math.isnan(no_text.m_tt) and math.isnan(no_text.m_vt)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    no_positive = modality_density(opposite, torch.tensor([False, False, True]))
    assert math.isnan(no_positive.m_tt)


# --- AMIA -------------------------------------------------------------------------


def _equal_cosine_rows(length, cosine):
    """Rows with unit norm and cosine `cosine` between every pair."""
    gram = (1 - cosine) * torch.eye(length) + cosine * torch.ones(length, length)
    return torch.linalg.cholesky(gram.double()).float()


def _reference_amia(Y, score, mask, knn=3, mmd_factor=0.1):
    """Literal loop of the ATV port (set of indices, means recomputed each step)."""
    Y = torch.nn.functional.normalize(Y.float(), dim=-1)
    density = modality_density(Y, mask).rho
    distances = 1 - Y @ Y.T
    neighbours = torch.sort(distances, dim=1, stable=True).indices[:, 1 : knn + 1]
    graph = score + (
        torch.exp(-torch.gather(distances, 1, neighbours)) * score[neighbours]
    ).sum(-1)
    squared = (Y**2).sum(1)
    K = torch.exp(-(squared[:, None] + squared[None, :] - 2 * Y @ Y.T) / 2)
    order, chosen_set = [], set()
    while len(order) < len(score):
        a = int(torch.argmax(graph))
        nbr = neighbours[a]
        graph[nbr] -= torch.exp(-distances[a, nbr] * 0.2) * torch.clamp(graph[a], min=0)
        order.append(a)
        chosen_set.add(a)
        S = torch.tensor(sorted(chosen_set))
        graph[S] = graph.min() - 1
        mmd2 = K.mean() + K[S][:, S].mean() - 2 * K[:, S].mean()
        if mmd2 < torch.sqrt(torch.tensor(1 - density)) * mmd_factor:
            break
    return order


def test_amia_hand_case_equal_cosines():
    # 4 tokens, all pairwise cosines 0.5: rho = 0.5, D = 0.5 off the diagonal,
    # K = exp(-0.5) off the diagonal. With e = exp(-0.5):
    # MMD^2(|S|) = (1 + (|S|-1) e)/|S| - (1 + 3e)/4 = 0.295, 0.098, 0.033 for 1,2,3
    # and the threshold is 0.1 * sqrt(0.5) = 0.0707, so 3 tokens are selected.
    # knn = 3 = every other token, g = (1-e) score + e sum(score): argmax g =
    # argmax score -> token 1 first; then 3; then 2 (its g < 0, no lowering).
    Y = _equal_cosine_rows(4, 0.5)
    mask = torch.tensor([True, True, False, False])
    density = modality_density(Y, mask)
    assert density.rho == pytest.approx(0.5, abs=1e-6)
    score = torch.tensor([0.1, 0.4, 0.2, 0.3])
    selected = amia_select(Y, score, mask)
    assert selected.dtype == torch.long
    assert selected.tolist() == [1, 3, 2]


def test_amia_neighbour_lowering_changes_the_order():
    # tokens 1 and 2 nearly identical; 0 and 3 far apart. Scores 0.4 > 0.35 > 0.3:
    # after picking 1 its nearest neighbour 2 is lowered, so 3 comes before 2.
    Y = torch.tensor(
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 1.0, 0.0]]
    )
    mask = torch.tensor([False, True, True, False])
    score = torch.tensor([0.05, 0.4, 0.35, 0.3])
    selected = amia_select(Y, score, mask, knn=1, mmd_factor=0.0).tolist()
    assert selected[:2] == [1, 3]
    assert sorted(selected) == [0, 1, 2, 3]  # rule never fires: cap of L tokens
    assert selected == _reference_amia(Y, score.clone(), mask, knn=1, mmd_factor=0.0)


def test_amia_matches_literal_reference_loop_on_random_case():
    generator = torch.Generator().manual_seed(4)
    for trial in range(3):
        Y = torch.randn(30, 8, generator=generator) + 0.5
        mask = torch.zeros(30, dtype=torch.bool)
        mask[5:20] = True
        score = torch.softmax(torch.randn(30, generator=generator), dim=0)
        selected = amia_select(Y, score, mask).tolist()
        assert selected == _reference_amia(Y, score.clone(), mask), trial
        assert 0 < len(selected) < 30
        assert len(set(selected)) == len(selected)


def test_amia_large_factor_stops_after_one_token():
    Y = _equal_cosine_rows(4, 0.5)
    mask = torch.tensor([True, True, False, False])
    selected = amia_select(Y, torch.tensor([0.1, 0.2, 0.4, 0.3]), mask, mmd_factor=10)
    assert selected.tolist() == [2]


def test_amia_nan_density_selects_every_token():
    # a single visual token: m_vv is NaN, the stop rule never fires -> all L tokens
    Y = _equal_cosine_rows(5, 0.3)
    mask = torch.tensor([True, False, False, False, False])
    selected = amia_select(Y, torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2]), mask)
    assert sorted(selected.tolist()) == [0, 1, 2, 3, 4]


def test_amia_short_sample_uses_fewer_neighbours():
    Y = torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    selected = amia_select(Y, torch.tensor([0.7, 0.3]), torch.tensor([True, False]))
    assert selected.tolist()[0] == 0


def test_amia_rejects_bad_input():
    Y = torch.randn(4, 3)
    with pytest.raises(ValueError, match="both visual and text tokens, got 0 visual"):
        amia_select(Y, torch.ones(4), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"score must have shape \(4,\)"):
        amia_select(Y, torch.ones(3), torch.tensor([True, False, False, True]))
    with pytest.raises(ValueError, match="knn must be a positive int, got 0"):
        amia_select(Y, torch.ones(4), torch.tensor([True, False, False, True]), knn=0)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0, got 0"):
        amia_select(Y, torch.ones(4), torch.tensor([True, False, False, True]), sigma=0)


# --- DAS ---------------------------------------------------------------------------


def test_das_score():
    assert das_score(0.5, 0.25, 0.75) == pytest.approx(1.5)


def test_das_hand_case_no_overshoot():
    # P = 200, keep_total = 100, floors ceil(100 * 0.4) = 40 each, rest 20 -> 5 / 15
    assert das_keep_counts([100, 100], [1.0, 3.0], 0.5, 0.6) == [45, 55]
    assert das_allocate([100, 100], [1.0, 3.0], 0.5, 0.6) == pytest.approx([0.55, 0.45])


def test_das_overshoot_is_removed_not_added():
    # keep_total 150, floors 25 each, rest 75 -> ceil(18.75)=19, 19, ceil(37.5)=38
    # -> 151; the excess 1 comes off the group keeping most (the reference adds it)
    keep = das_keep_counts([100, 100, 100], [1.0, 1.0, 2.0], 0.5, 0.75)
    assert keep == [44, 44, 62]
    assert sum(keep) == 150


def test_das_full_group_reaches_zero_sparsity():
    # floors 4 / 400, rest 101 -> +76 (capped at 10, score zeroed) / +26; then the
    # remaining 69 all go to group 1 -> [10, 495]
    assert das_keep_counts([10, 1000], [3.0, 1.0], 0.5, 0.6) == [10, 495]
    assert das_allocate([10, 1000], [3.0, 1.0], 0.5, 0.6) == pytest.approx([0.0, 0.505])


def test_das_budget_sums_and_bounds_on_random_case():
    generator = torch.Generator().manual_seed(0)
    numels = [int(n) for n in torch.randint(50, 5000, (28,), generator=generator)]
    scores = torch.rand(28, generator=generator).tolist()
    for sparsity in (0.5, 0.6):
        max_sparsity = sparsity + 0.1
        keep = das_keep_counts(numels, scores, sparsity, max_sparsity)
        assert sum(keep) == int(sum(numels) * (1 - sparsity))
        allocated = das_allocate(numels, scores, sparsity, max_sparsity)
        for n, kept, group_sparsity in zip(numels, keep, allocated, strict=True):
            assert math.ceil(n * (1 - max_sparsity)) <= kept <= n
            assert 0.0 <= group_sparsity <= max_sparsity + 1e-12
            assert group_sparsity == pytest.approx(1 - kept / n)


def test_das_floors_above_budget_and_all_zero_scores():
    # floors ceil(1.5) = 2 each exceed keep_total 3: nothing is handed out
    assert das_keep_counts([3, 3], [1.0, 1.0], 0.5, 0.5) == [2, 2]
    # no score anywhere: the rest goes to groups with room in index order
    assert das_keep_counts([10, 10], [0.0, 0.0], 0.5, 0.9) == [9, 1]


def test_das_rejects_bad_input():
    with pytest.raises(ValueError, match="got 2 and 1"):
        das_allocate([10, 10], [1.0], 0.5, 0.6)
    with pytest.raises(ValueError, match=r"max_sparsity must be in \[sparsity, 1\]"):
        das_allocate([10, 10], [1.0, 1.0], 0.5, 0.4)
    with pytest.raises(
        ValueError, match=r"scores\[1\] must be finite and >= 0, got nan"
    ):
        das_allocate([10, 10], [1.0, float("nan")], 0.5, 0.6)
    with pytest.raises(ValueError, match=r"numels\[0\] must be positive, got 0"):
        das_allocate([0, 10], [1.0, 1.0], 0.5, 0.6)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        das_allocate([10, 10], [1.0, 1.0], 1.0, 1.0)
