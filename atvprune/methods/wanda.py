"""Wanda (methods.md section 3): activation-scaled magnitude, per-row masks.

Statistic per Linear input feature j, a fp32 running mean over samples of the
squared L2 norm over tokens. Starting from ``scaler = 0, n = 0``, each call with a
sample ``X`` (tokens, in) and unit ``u`` (1 per sample) does::

    scaler *= n / (n + u)
    n      += u
    scaler += sum_t X[t, j]^2 / n          # X cast to fp32 first

so after N samples (u = 1 each) ``scaler_j = (1/N) * sum_s ||X_s[:, j]||^2``.
Samples of different lengths are not renormalised per token.
TAMP's AMIA calls the same update with ``u = number of selected tokens``.

Score ``S = |W| * sqrt(scaler)[None, :]`` in fp32; unstructured masks use the per-row
rule (``int(in * s)`` smallest per row, stable sort, so dead inputs with scaler 0
have score 0 and go first); N:M masks prune the N smallest per group of M columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atvprune.methods.masks import (
    check_matrix,
    check_nm,
    check_sparsity,
    nm_mask_from_score,
    row_mask_from_score,
)


class RunningScaler:
    """Running Wanda statistic ``scaler_row`` (fp32, length ``in_features``).

    ``add(x, unit)``::

        scaler *= n / (n + u);  n += u;  scaler += sum_tokens(x.float() ** 2) / n
    """

    def __init__(self, in_features: int, device: torch.device | str | None = None):
        if isinstance(in_features, bool) or not isinstance(in_features, int):
            raise ValueError(f"in_features must be an int, got {in_features!r}")
        if in_features <= 0:
            raise ValueError(f"in_features must be positive, got {in_features}")
        self.in_features = in_features
        self.value = torch.zeros(in_features, dtype=torch.float32, device=device)
        self.count = 0

    def add(self, x: torch.Tensor, unit: int | None = None) -> None:
        """Fold one call's input into the running mean.

        Args:
            x: ``(tokens, in)`` or ``(B, tokens, in)``; every token of every batch
                row is summed.
            unit: the weight ``u`` of this call. ``None`` means the batch size, as
                the references (``u = B``): 1 for a 2-D input, ``B`` for a 3-D one.
                AMIA passes the number of selected tokens.
        """
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f"x must be (tokens, in) or (B, tokens, in), got {shape}")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features, expected in_features={self.in_features}"
            )
        if unit is None:
            unit = 1 if x.dim() == 2 else x.shape[0]
        if isinstance(unit, bool) or not isinstance(unit, int) or unit <= 0:
            raise ValueError(f"unit must be a positive int, got {unit!r}")
        tokens = x.detach().reshape(-1, self.in_features).to(torch.float32)
        self.value *= self.count / (self.count + unit)
        self.count += unit
        # ||x_j||_2^2 as the references compute it (norm, then square).
        squared_norm = torch.linalg.vector_norm(tokens, ord=2, dim=0) ** 2
        self.value += squared_norm.to(self.value.device) / self.count


def scaler_row(samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """Wanda ``scaler_row`` over per-sample ``(tokens, in)`` inputs, one unit each.

    ``scaler_j = (1/N) * sum_s sum_t X_s[t, j]^2`` (fp32, running-mean order).
    """
    if len(samples) == 0:
        raise ValueError("samples must contain at least one (tokens, in) tensor")
    scaler = RunningScaler(samples[0].shape[-1], device=samples[0].device)
    for sample in samples:
        scaler.add(sample, unit=1)
    return scaler.value


def wanda_score(weight: torch.Tensor, scaler_row: torch.Tensor) -> torch.Tensor:
    """Wanda score ``S = |W| * sqrt(scaler_row)[None, :]`` in fp32."""
    check_matrix("weight", weight)
    if scaler_row.shape != (weight.shape[1],):
        raise ValueError(
            f"scaler_row must have shape ({weight.shape[1]},), "
            f"got {tuple(scaler_row.shape)}"
        )
    return weight.detach().abs().float() * torch.sqrt(scaler_row.float()).reshape(1, -1)


def wanda_mask(
    weight: torch.Tensor,
    scaler_row: torch.Tensor,
    sparsity: float,
    prune_n: int = 0,
    prune_m: int = 0,
) -> torch.Tensor:
    """Wanda mask (True = pruned) from ``S = |W| * sqrt(scaler_row)``.

    Unstructured: per row, the ``int(in * s)`` smallest ``S`` (stable sort).
    N:M (``prune_n > 0``; ``sparsity`` ignored): N smallest per group of M columns.
    """
    score = wanda_score(weight, scaler_row)
    sparsity = check_sparsity(sparsity)
    if check_nm(prune_n, prune_m, weight.shape[1]):
        return nm_mask_from_score(score, prune_n, prune_m)
    return row_mask_from_score(score, sparsity)
