"""Magnitude pruning (methods.md section 2). No calibration data.

Score ``S = |W|``. Three comparison groups:

* default, the locuslab/wanda per-layer rule (``prune_magnitude``)::

      thr  = sort(|W|.flatten())[int(numel * s)]
      mask = |W| <= thr

  Without ties this prunes ``int(numel * s) + 1`` weights (the threshold entry itself
  is pruned too); with ties at the threshold, every tied entry is pruned.
  At ``s = 0`` the rule is kept as the reference runs it: ``thr = min |W|``, so every
  entry equal to the smallest magnitude is pruned (at least one weight). Callers that
  want "sparsity 0 = dense" must skip the call, as the reference scripts do.
* ``per_row=True``: the Wanda per-row rule with score ``|W|``: each row prunes exactly
  ``int(in * s)`` (stable ascending sort).
* N:M (``prune_n > 0``): in each row and each group of M consecutive input columns
  prune the N smallest ``|W|`` (ties: lower index first); ``sparsity`` is ignored.

TAMP's released magnitude pruner (signed score, ``1 - s`` as target) is NOT copied.
"""

from __future__ import annotations

import torch

from atvprune.methods.masks import (
    check_matrix,
    check_nm,
    check_sparsity,
    nm_mask_from_score,
    row_mask_from_score,
)


def magnitude_mask(
    weight: torch.Tensor,
    sparsity: float,
    prune_n: int = 0,
    prune_m: int = 0,
    per_row: bool = False,
) -> torch.Tensor:
    """Return the magnitude mask (True = pruned) for a ``(out, in)`` weight.

    Default: ``mask = |W| <= sort(|W|.flatten())[int(numel * s)]`` (whole matrix,
    one extra weight pruned when there are no ties; at ``s = 0`` the minimum(s)).
    ``per_row=True``: per row, prune the ``int(in * s)`` smallest ``|W|``.
    ``prune_n > 0``: N smallest ``|W|`` in each group of M consecutive columns.
    """
    check_matrix("weight", weight)
    sparsity = check_sparsity(sparsity)
    score = weight.detach().abs()
    if check_nm(prune_n, prune_m, weight.shape[1]):
        return nm_mask_from_score(score, prune_n, prune_m)
    if per_row:
        return row_mask_from_score(score, sparsity)
    threshold = torch.sort(score.flatten()).values[int(score.numel() * sparsity)]
    return score <= threshold
