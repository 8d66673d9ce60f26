"""TAMP pieces (methods.md section 5): attention score, AMIA selection, DAS budget.

**Attention score (5.1).** With ``Q`` (heads, L, d) and ``K`` (kv_heads, L, d) after
RoPE, every kv head is repeated ``num_key_value_groups`` times (head h uses kv head
``h // groups``, as transformers' ``repeat_kv``), then::

    A = softmax_fp32(Q K^T / sqrt(d) + causal_mask)  -> cast to Q's dtype, NaN -> 0
    score = mean_heads(A)[L - 1, :]                   # length L

Only the last query row is needed and its causal-mask row is all zeros (the last
token sees every key), so just that row is computed; this equals the full masked
computation (checked in the tests).

**AMIA (5.2, following the ATV port).** ``Y`` (L, d) is the Linear's *output* for
the sample, cast to fp32 and L2-normalised per row (``F.normalize``):

* density ``rho = (m_vv + m_tt + m_vt) / 3`` with ``m_vv`` (``m_tt``) the mean of the
  strictly positive entries of ``triu(Yv Yv^T, 1)`` among visual (text) tokens and
  ``m_vt`` the mean of all visual-text cosines ``Yv Yt^T``;
* graph ``D = 1 - Y Y^T``; neighbours: the ``knn + 1`` smallest ``D`` of each row
  (stable order) with the first dropped (normally the token itself);
  ``g_i = score_i + sum_{n in nbr(i)} exp(-graph_decay * D[i, n]) * score_n``;
* kernel ``K_ij = exp(-(|y_i|^2 + |y_j|^2 - 2 y_i.y_j) / (2 sigma^2))``;
* greedy: ``a = argmax g`` (first maximum); ``g[nbr(a)] -= exp(-select_decay *
  D[a, nbr(a)]) * max(g[a], 0)``; add ``a`` to S; ``g[S] = min(g) - 1``;
  ``MMD^2 = mean(K) + mean(K[S, S]) - 2 mean(K[:, S])``; stop as soon as
  ``MMD^2 < mmd_factor * sqrt(1 - rho)``, or when every token is selected
  (iteration cap of L; the reference loops forever when the rule cannot fire).

The selected tokens' *inputs* then feed the Wanda running mean with
``unit = number of selected tokens`` (``RunningScaler.add(x[sel], unit=len(sel))``).

**DAS (5.3).** Per Linear ``score = (1 - m_vv) + (1 - m_tt) + (1 - m_vt)`` (running
mean of the terms over samples on the dense model), then ``das_allocate``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F


def last_token_attention(
    query: torch.Tensor, key: torch.Tensor, num_key_value_groups: int
) -> torch.Tensor:
    """Last token's causal attention row averaged over heads (length L).

    ``query`` (heads, L, d) and ``key`` (kv_heads, L, d) already carry RoPE;
    ``heads == kv_heads * num_key_value_groups``. Scores in the query dtype, softmax
    in fp32, cast back to the query dtype, NaN -> 0, mean over heads (as the ATV
    port). Returned in the query dtype.
    """
    if query.dim() != 3 or key.dim() != 3:
        raise ValueError(
            f"query and key must be (heads, L, d), got {tuple(query.shape)} and "
            f"{tuple(key.shape)}"
        )
    if (
        isinstance(num_key_value_groups, bool)
        or not isinstance(num_key_value_groups, int)
        or num_key_value_groups <= 0
    ):
        raise ValueError(
            f"num_key_value_groups must be a positive int, got {num_key_value_groups!r}"
        )
    heads, length, head_dim = query.shape
    if key.shape != (heads // num_key_value_groups, length, head_dim) or (
        heads % num_key_value_groups != 0
    ):
        raise ValueError(
            f"key shape {tuple(key.shape)} does not fit query shape "
            f"{tuple(query.shape)} with num_key_value_groups={num_key_value_groups}"
        )
    key = key.repeat_interleave(num_key_value_groups, dim=0)
    # Row L-1 of Q K^T; its causal mask row is all zeros (no future keys).
    logits = query[:, -1:, :] @ key.transpose(1, 2) / math.sqrt(head_dim)
    weights = F.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nan_to_num(weights, nan=0.0)
    return weights.mean(dim=0)[-1]


class ModalityDensity(NamedTuple):
    """``rho = (m_vv + m_tt + m_vt) / 3`` and its three cosine-mean terms."""

    rho: float
    m_vv: float
    m_tt: float
    m_vt: float


def _positive_upper_mean(unit_rows: torch.Tensor) -> float:
    """Mean of the strictly positive entries of ``triu(Y Y^T, diagonal=1)``."""
    upper = (unit_rows @ unit_rows.T).triu(diagonal=1)
    return upper[upper > 0].mean().item()


def _density_of_unit_rows(unit_rows: torch.Tensor, image_mask: torch.Tensor):
    visual = unit_rows[image_mask]
    text = unit_rows[~image_mask]
    m_vv = _positive_upper_mean(visual)
    m_tt = _positive_upper_mean(text)
    m_vt = (visual @ text.T).mean().item()
    return ModalityDensity((m_vv + m_tt + m_vt) / 3, m_vv, m_tt, m_vt)


def _check_tokens(Y: torch.Tensor, image_mask: torch.Tensor) -> None:
    if not isinstance(Y, torch.Tensor) or Y.dim() != 2:
        shape = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y)
        raise ValueError(f"Y must be a 2-D (tokens, features) tensor, got {shape}")
    if not isinstance(image_mask, torch.Tensor) or image_mask.dtype != torch.bool:
        raise ValueError("image_mask must be a bool tensor")
    if image_mask.shape != (Y.shape[0],):
        raise ValueError(
            f"image_mask must have shape ({Y.shape[0]},), got {tuple(image_mask.shape)}"
        )


def modality_density(Y: torch.Tensor, image_mask: torch.Tensor) -> ModalityDensity:
    """Density terms of the rows of ``Y`` (L, d), cast to fp32 and L2-normalised.

    ``m_vv``/``m_tt``: mean of the strictly positive upper-triangular cosines among
    visual/text tokens; ``m_vt``: mean of all visual-text cosines;
    ``rho = (m_vv + m_tt + m_vt) / 3``.

    Empty sets give NaN, as torch's mean of an empty tensor in the references: a
    modality with a single token (no pair) or with no positive cosine gives a NaN
    ``m_vv``/``m_tt``; an empty modality gives NaN for its term and for ``m_vt``.
    Any NaN term makes ``rho`` NaN.
    """
    _check_tokens(Y, image_mask)
    unit_rows = F.normalize(Y.detach().to(torch.float32), dim=-1)
    return _density_of_unit_rows(unit_rows, image_mask.to(Y.device))


def _gaussian_kernel(unit_rows: torch.Tensor, sigma: float) -> torch.Tensor:
    squared_norms = (unit_rows**2).sum(dim=1)
    squared_distances = (
        squared_norms.view(-1, 1)
        + squared_norms.view(1, -1)
        - 2.0 * unit_rows @ unit_rows.T
    )
    return torch.exp(-squared_distances / (2 * sigma**2))


def _check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def amia_select(
    Y: torch.Tensor,
    score: torch.Tensor,
    image_mask: torch.Tensor,
    knn: int = 3,
    graph_decay: float = 1.0,
    select_decay: float = 0.2,
    sigma: float = 1.0,
    mmd_factor: float = 0.1,
) -> torch.Tensor:
    """TAMP's AMIA token selection for one sample and one Linear.

    Args:
        Y: the Linear's output ``(L, out)`` for the sample (cast to fp32 here).
        score: the layer's last-token attention score ``(L,)`` (cast to fp32).
        image_mask: ``(L,)`` bool, True = visual token. Both modalities must be
            present (the reference asserts this).
        knn: neighbours per token; ``min(knn, L - 1)`` are used for short samples.

    Returns:
        LongTensor of the selected token indices (over all L tokens, either
        modality) in selection order. The loop stops on the MMD rule (see the module
        docstring) or after all L tokens; a NaN density (a one-token modality or no
        positive cosine) makes the rule never fire, so every token is selected.
    """
    _check_tokens(Y, image_mask)
    length = Y.shape[0]
    if not isinstance(score, torch.Tensor) or score.shape != (length,):
        shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score)
        raise ValueError(f"score must have shape ({length},), got {shape}")
    n_img = int(image_mask.sum().item())
    if n_img == 0 or n_img == length:
        raise ValueError(
            f"amia_select needs both visual and text tokens, got {n_img} visual of "
            f"{length} tokens"
        )
    if isinstance(knn, bool) or not isinstance(knn, int) or knn <= 0:
        raise ValueError(f"knn must be a positive int, got {knn!r}")
    graph_decay = _check_positive("graph_decay", graph_decay, allow_zero=True)
    select_decay = _check_positive("select_decay", select_decay, allow_zero=True)
    sigma = _check_positive("sigma", sigma)
    mmd_factor = _check_positive("mmd_factor", mmd_factor, allow_zero=True)

    unit_rows = F.normalize(Y.detach().to(torch.float32), dim=-1)
    density = _density_of_unit_rows(unit_rows, image_mask.to(Y.device))
    score = score.detach().to(device=Y.device, dtype=torch.float32)

    distances = 1 - unit_rows @ unit_rows.T
    num_neighbours = min(knn, length - 1)
    nearest = torch.sort(distances, dim=1, stable=True).indices
    neighbours = nearest[:, 1 : num_neighbours + 1]
    neighbour_distances = torch.gather(distances, 1, neighbours)
    graph_score = score + (
        torch.exp(-graph_decay * neighbour_distances) * score[neighbours]
    ).sum(dim=-1)

    # MMD^2 terms as running sums in fp64 (same value as the reference's means).
    kernel = _gaussian_kernel(unit_rows, sigma).to(torch.float64)
    kernel_mean = kernel.mean()
    kernel_column_sums = kernel.sum(dim=0)
    threshold = mmd_factor * torch.sqrt(torch.tensor(1 - density.rho))
    selected: list[int] = []
    selected_column_sum = torch.zeros((), dtype=torch.float64)
    selected_block_sum = torch.zeros((), dtype=torch.float64)
    while len(selected) < length:
        chosen = int(torch.argmax(graph_score).item())
        chosen_neighbours = neighbours[chosen]
        graph_score[chosen_neighbours] -= torch.exp(
            -select_decay * distances[chosen, chosen_neighbours]
        ) * torch.clamp(graph_score[chosen], min=0)
        # sum K[S+a, S+a] = sum K[S, S] + 2 sum K[a, S] + K[a, a] (K symmetric)
        selected_block_sum += (
            2 * kernel[chosen, selected].sum() + kernel[chosen, chosen]
        )
        selected_column_sum += kernel_column_sums[chosen]
        selected.append(chosen)
        graph_score[selected] = torch.min(graph_score) - 1
        count = len(selected)
        mmd2 = (
            kernel_mean
            + selected_block_sum / count**2
            - 2 * selected_column_sum / (length * count)
        )
        if mmd2 < threshold:
            break
    return torch.tensor(selected, dtype=torch.long, device=Y.device)


def das_score(m_vv: float, m_tt: float, m_vt: float) -> float:
    """DAS group score ``(1 - m_vv) + (1 - m_tt) + (1 - m_vt)`` (sum aggregation)."""
    return (1 - m_vv) + (1 - m_tt) + (1 - m_vt)


def _check_das_args(
    numels: Sequence[int],
    scores: Sequence[float],
    sparsity: float,
    max_sparsity: float,
) -> None:
    if len(numels) == 0 or len(numels) != len(scores):
        raise ValueError(
            f"numels and scores must be non-empty and of equal length, got "
            f"{len(numels)} and {len(scores)}"
        )
    for g, numel in enumerate(numels):
        if isinstance(numel, bool) or not isinstance(numel, numbers.Integral):
            raise ValueError(f"numels[{g}] must be an int, got {numel!r}")
        if numel <= 0:
            raise ValueError(f"numels[{g}] must be positive, got {numel}")
    for g, group_score in enumerate(scores):
        if not isinstance(group_score, numbers.Real) or isinstance(group_score, bool):
            raise ValueError(f"scores[{g}] must be a real number, got {group_score!r}")
        if not math.isfinite(group_score) or group_score < 0:
            raise ValueError(
                f"scores[{g}] must be finite and >= 0, got {group_score!r}"
            )
    for name, value in (("sparsity", sparsity), ("max_sparsity", max_sparsity)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ValueError(f"{name} must be a real number, got {value!r}")
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if not sparsity <= max_sparsity <= 1:
        raise ValueError(
            f"max_sparsity must be in [sparsity, 1] = [{sparsity}, 1], got "
            f"{max_sparsity!r}"
        )


def das_keep_counts(
    numels: Sequence[int],
    scores: Sequence[float],
    sparsity: float,
    max_sparsity: float,
) -> list[int]:
    """Weights kept per group by TAMP's DAS budget loop (sign bug fixed).

    ``keep_total = int(P * (1 - s))`` with ``P = sum(numels)``; every group starts at
    ``keep_g = ceil(numel_g * (1 - max_s))``; while ``sum(keep) < keep_total``:

    * ``rest = keep_total - sum(keep)``;
      ``keep_g += ceil(score_g / sum(score) * rest)``;
    * groups with ``keep_g >= numel_g`` get ``score_g = 0``; ``keep_g = min(keep_g,
      numel_g)``;
    * fix-up when the ceilings overshoot: walk the groups by ``keep`` descending
      (stable) and **remove** the excess down to the starting ``ceil`` floor. The
      reference *adds* here (a bug) and uses ``int()`` for the floor; we subtract and
      keep the ``ceil`` floor, so the budget is met exactly and ``max_s`` holds;
    * if every remaining score is 0 (all scored groups full), the rest goes to the
      groups with room in index order (the reference's stuck branch would only look
      at groups with a positive score and never end).

    Arithmetic is exact Python ints plus float64 ratios (the reference uses fp32
    tensors). If the starting floors already exceed ``keep_total`` (``max_s`` close
    to ``s``) no weight is handed out and the total kept exceeds the budget.
    """
    _check_das_args(numels, scores, sparsity, max_sparsity)
    numels = [int(numel) for numel in numels]
    live_scores = [float(group_score) for group_score in scores]
    keep_total = int(sum(numels) * (1 - sparsity))
    floors = [math.ceil(numel * (1 - max_sparsity)) for numel in numels]
    keep = list(floors)
    groups = range(len(numels))
    while sum(keep) < keep_total:
        rest = keep_total - sum(keep)
        score_sum = sum(live_scores)
        if score_sum <= 0:
            for g in groups:
                added = min(rest, numels[g] - keep[g])
                keep[g] += added
                rest -= added
            break
        for g in groups:
            keep[g] += math.ceil(live_scores[g] / score_sum * rest)
            if keep[g] >= numels[g]:
                live_scores[g] = 0.0
            keep[g] = min(keep[g], numels[g])
        excess = sum(keep) - keep_total
        by_keep_descending = sorted(groups, key=lambda g: -keep[g])  # stable
        for g in by_keep_descending:
            if excess <= 0:
                break
            removed = min(excess, keep[g] - floors[g])
            keep[g] -= removed
            excess -= removed
    return keep


def das_allocate(
    numels: Sequence[int],
    scores: Sequence[float],
    sparsity: float,
    max_sparsity: float,
) -> list[float]:
    """Per-group sparsity ``clamp(1 - keep_g / numel_g, 0, 1)`` from DAS.

    ``keep_g`` from ``das_keep_counts`` (TAMP's budget loop with the fix-up sign
    bug fixed). Groups end at most at ``max_sparsity`` and may end at 0 %.
    """
    keep = das_keep_counts(numels, scores, sparsity, max_sparsity)
    return [
        min(1.0, max(0.0, 1 - kept / numel))
        for kept, numel in zip(keep, numels, strict=True)
    ]
