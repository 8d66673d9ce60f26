"""Shared mask rules and argument validation for every pruning method.

Conventions (methods.md): a weight is ``W`` of shape ``(out, in)``; a mask has the
same shape, dtype ``torch.bool``, and **True means the weight is pruned** (set to 0).

Two comparison groups are implemented here; the score comes from the method:

* Per-row rule (Wanda, ATV, TAMP-uniform, magnitude ``per_row``)::

      k = int(in * s)                        # Python int() of the float product
      order = argsort(score[r, :], stable)   # ascending, ties keep index order
      mask[r, order[:k]] = True              # for every output row r

  e.g. ``s = 0.6, in = 3584`` gives ``int(2150.4) = 2150`` pruned per row.

* N:M rule (Wanda N:M, SparseGPT N:M, magnitude N:M): in every row, each group of M
  consecutive input columns ``[g*M, (g+1)*M)`` has its N smallest scores pruned.
  The references use ``torch.topk(largest=False)``, whose order among equal scores is
  unspecified; here ties are broken **stably: the lower column index is pruned
  first** (so the result is deterministic).

When ``prune_n > 0`` the N:M rule is used and the unstructured ``sparsity`` argument
is ignored (it is still validated). ``prune_n == 0`` (with ``prune_m == 0``) means
unstructured.
"""

from __future__ import annotations

import math
import numbers

import torch


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_sparsity(sparsity: float) -> float:
    """Validate an unstructured sparsity ratio and return it as a float.

    Rule: ``0 <= sparsity < 1`` (a finite real number, not a bool). ``1`` is
    rejected because the threshold rules index ``sorted[int(numel * s)]``.

    Raises:
        ValueError: naming the offending value.
    """
    if not isinstance(sparsity, numbers.Real) or isinstance(sparsity, bool):
        raise ValueError(f"sparsity must be a real number in [0, 1), got {sparsity!r}")
    value = float(sparsity)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return value


def check_nm(prune_n: int, prune_m: int, in_features: int) -> bool:
    """Validate an N:M setting; return True when N:M pruning is requested.

    Rules:
      * ``prune_n == 0 and prune_m == 0``: unstructured, returns False.
      * otherwise N:M, which needs integers ``0 < N < M`` and ``in_features % M == 0``
        (groups are consecutive input columns, so a partial last group is an error).

    Raises:
        ValueError: naming the offending value.
    """
    if not _is_int(prune_n) or not _is_int(prune_m):
        raise ValueError(
            f"prune_n and prune_m must be integers, got prune_n={prune_n!r}, "
            f"prune_m={prune_m!r}"
        )
    if not _is_int(in_features) or in_features <= 0:
        raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
    if prune_n == 0 and prune_m == 0:
        return False
    if not 0 < prune_n < prune_m:
        raise ValueError(
            f"N:M pruning needs 0 < N < M, got prune_n={prune_n}, prune_m={prune_m} "
            "(use prune_n=0, prune_m=0 for unstructured)"
        )
    if in_features % prune_m != 0:
        raise ValueError(
            f"N:M pruning needs in_features divisible by M, got in_features="
            f"{in_features}, prune_m={prune_m}"
        )
    return True


def check_matrix(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is a 2-D ``(out, in)`` tensor."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a 2-D (out, in) tensor, got {type(value)}")
    if value.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D (out, in) tensor, got shape {tuple(value.shape)}"
        )


def row_mask_from_score(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per-row mask: in each row prune the ``int(in * s)`` smallest scores.

    ``k = int(in * s)``; ``mask[r, argsort(score[r], stable=True)[:k]] = True``.
    Ties keep index order (lower index pruned first), as the Wanda reference's
    ``torch.sort(..., stable=True)``.
    """
    check_matrix("score", score)
    sparsity = check_sparsity(sparsity)
    num_pruned = int(score.shape[1] * sparsity)
    mask = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    order = torch.sort(score, dim=-1, stable=True).indices
    mask.scatter_(1, order[:, :num_pruned], True)
    return mask


def nm_mask_from_score(score: torch.Tensor, prune_n: int, prune_m: int) -> torch.Tensor:
    """N:M mask: in each row and each group of M consecutive columns prune N smallest.

    For group ``g`` (columns ``g*M .. g*M+M-1``) of row ``r``:
    ``mask[r, g*M + argsort(score[r, g*M:(g+1)*M], stable=True)[:N]] = True``.
    Ties are broken stably: the lower column index is pruned first.
    """
    check_matrix("score", score)
    rows, columns = score.shape
    if not check_nm(prune_n, prune_m, columns):
        raise ValueError(
            f"nm_mask_from_score needs prune_n > 0, got prune_n={prune_n}, "
            f"prune_m={prune_m}"
        )
    groups = score.reshape(rows, columns // prune_m, prune_m)
    order = torch.sort(groups, dim=-1, stable=True).indices[..., :prune_n]
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=score.device)
    mask.scatter_(2, order, True)
    return mask.reshape(rows, columns)
