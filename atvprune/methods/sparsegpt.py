"""SparseGPT (methods.md section 4), the official IST-DASLab algorithm.

Hessian per Linear (fp32, ``(in, in)``), with ``u = B`` (1 per sample)::

    H *= n / (n + u);  n += u;  Xs = sqrt(2 / n) * X^T (fp32);  H += Xs Xs^T
    => H = (2 / N) * sum_s X_s^T X_s

Prune step, in fp32 on ``W = weight.float()``:

1. ``dead = diag(H) == 0``: ``H[dead, dead] = 1`` and ``W[:, dead] = 0``.
2. Always damp: ``H += percdamp * mean(diag(H)) * I``. Then
   ``U = cholesky(cholesky_inverse(cholesky(H)), upper=True)`` is used as ``Hinv``
   (row i of U, scaled by ``1/U[i,i]``, is row i of the inverse Hessian of the
   columns i.. that are still free, so ``U[i,i]^2 = [H_F^-1]_ii``).
3. For each block ``[i1, i2)`` of at most ``blocksize`` columns, ``W1 = W[:, i1:i2]``
   (already changed by the earlier blocks' lazy updates), ``Hinv1 = U[i1:i2, i1:i2]``:

   * unstructured mask, chosen once from the *current* block over all rows::

         score = W1^2 / diag(Hinv1)[None, :]^2
         thr   = sort(score.flatten())[int(score.numel() * s)]
         mask1 = score <= thr            # int(numel * s) + 1 pruned without ties

   * N:M: ``mask1`` starts empty; at every column ``i % M == 0`` the same score on
     the current ``W1[:, i:i+M]`` marks the N smallest per row (ties: lower index).
   * column sweep ``i = 0..count-1``: ``w = W1[:, i]``, ``d = Hinv1[i, i]``,
     ``q = w`` with ``q[mask1[:, i]] = 0``, ``err = (w - q) / d``,
     ``W1[:, i:] -= err ⊗ Hinv1[i, i:]``; ``Q1[:, i] = q``, ``Err1[:, i] = err``.
   * write back ``W[:, i1:i2] = Q1`` and do the lazy update
     ``W[:, i2:] -= Err1 @ U[i1:i2, i2:]``.
4. Cast back to the input weight's dtype.

The returned mask is the union of the per-block masks (what the algorithm chose);
masked entries are exactly 0 in the returned weight. Dead input columns are zeroed
too (step 1): in unstructured mode they are always inside the mask (score 0 is
``<= thr``); in N:M mode a dead column can fall outside the mask when more than N
scores of its group are 0, yet its weights are still 0.

``sparsity == 0`` (unstructured) is an early return: the weight is returned
unchanged (a copy) with an empty mask. The ``<=`` rule would otherwise prune the
smallest score of every block and update the rest; the reference scripts never call
the pruner at sparsity 0. With N:M (``prune_n > 0``) ``sparsity`` is ignored.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from atvprune.methods.masks import (
    check_matrix,
    check_nm,
    check_sparsity,
    nm_mask_from_score,
)


class RunningHessian:
    """Running SparseGPT Hessian ``H = (2/N) * sum_s X_s^T X_s`` (fp32).

    ``add(x)``: ``H *= n/(n+u); n += u; Xs = sqrt(2/n) * X^T; H += Xs Xs^T`` with
    ``u`` the batch size (1 for a 2-D ``(tokens, in)`` input, ``B`` for 3-D).
    """

    def __init__(self, in_features: int, device: torch.device | str | None = None):
        if isinstance(in_features, bool) or not isinstance(in_features, int):
            raise ValueError(f"in_features must be an int, got {in_features!r}")
        if in_features <= 0:
            raise ValueError(f"in_features must be positive, got {in_features}")
        self.in_features = in_features
        self.value = torch.zeros(
            (in_features, in_features), dtype=torch.float32, device=device
        )
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        """Fold one call's input ``(tokens, in)`` or ``(B, tokens, in)`` into H."""
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f"x must be (tokens, in) or (B, tokens, in), got {shape}")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features, expected in_features={self.in_features}"
            )
        unit = 1 if x.dim() == 2 else x.shape[0]
        tokens = x.detach().reshape(-1, self.in_features)
        self.value *= self.count / (self.count + unit)
        self.count += unit
        scaled = math.sqrt(2 / self.count) * tokens.t().to(torch.float32)
        self.value += (scaled @ scaled.t()).to(self.value.device)


def hessian(samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """``H = (2/N) * sum_s X_s^T X_s`` in fp32 over per-sample ``(tokens, in)``."""
    if len(samples) == 0:
        raise ValueError("samples must contain at least one (tokens, in) tensor")
    running = RunningHessian(samples[0].shape[-1], device=samples[0].device)
    for sample in samples:
        running.add(sample)
    return running.value


def _check_prune_args(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    blocksize: int,
    percdamp: float,
) -> None:
    check_matrix("weight", weight)
    columns = weight.shape[1]
    if not isinstance(hessian, torch.Tensor) or hessian.shape != (columns, columns):
        shape = tuple(hessian.shape) if isinstance(hessian, torch.Tensor) else hessian
        raise ValueError(f"hessian must have shape ({columns}, {columns}), got {shape}")
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize <= 0:
        raise ValueError(f"blocksize must be a positive int, got {blocksize!r}")
    if (
        not isinstance(percdamp, numbers.Real)
        or isinstance(percdamp, bool)
        or not percdamp >= 0
    ):
        raise ValueError(f"percdamp must be a real number >= 0, got {percdamp!r}")


def _inverse_hessian_upper(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Damped ``U = cholesky(H^-1, upper=True)`` (H already has dead columns fixed)."""
    columns = hessian.shape[0]
    damp = percdamp * torch.mean(torch.diag(hessian))
    diagonal = torch.arange(columns, device=hessian.device)
    hessian[diagonal, diagonal] += damp
    try:
        lower = torch.linalg.cholesky(hessian)
        inverse = torch.cholesky_inverse(lower)
        return torch.linalg.cholesky(inverse, upper=True)
    except torch.linalg.LinAlgError as error:
        raise ValueError(
            f"hessian is not positive definite after damping (percdamp={percdamp}): "
            f"{error}"
        ) from error


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    prune_n: int = 0,
    prune_m: int = 0,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (out, in) with the OBS updates of SparseGPT.

    Returns ``(new_weight, mask)``: ``new_weight`` in ``weight.dtype`` with every
    masked entry exactly 0, ``mask`` (bool, True = pruned) the union of the per-block
    masks. ``hessian`` is not modified. See the module docstring for the algorithm.
    """
    _check_prune_args(weight, hessian, blocksize, percdamp)
    sparsity = check_sparsity(sparsity)
    rows, columns = weight.shape
    use_nm = check_nm(prune_n, prune_m, columns)
    if use_nm and blocksize % prune_m != 0:
        raise ValueError(
            f"N:M SparseGPT needs blocksize divisible by M, got blocksize={blocksize}, "
            f"prune_m={prune_m}"
        )
    if not use_nm and sparsity == 0.0:
        return weight.detach().clone(), torch.zeros(
            weight.shape, dtype=torch.bool, device=weight.device
        )

    W = weight.detach().clone().to(torch.float32)
    H = hessian.detach().clone().to(device=W.device, dtype=torch.float32)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Hinv = _inverse_hessian_upper(H, percdamp)

    mask = torch.zeros((rows, columns), dtype=torch.bool, device=W.device)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        hinv_diagonal = torch.diag(Hinv1)

        if use_nm:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            score = W1**2 / hinv_diagonal.reshape(1, -1) ** 2
            sorted_score = torch.sort(score.flatten()).values
            mask1 = score <= sorted_score[int(score.numel() * sparsity)]

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if use_nm and i % prune_m == 0:
                group = slice(i, i + prune_m)
                group_hinv = hinv_diagonal[group].reshape(1, -1)
                group_score = W1[:, group] ** 2 / group_hinv**2
                mask1[:, group] |= nm_mask_from_score(group_score, prune_n, prune_m)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err

        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
        mask[:, i1:i2] = mask1

    return W.to(weight.dtype), mask
