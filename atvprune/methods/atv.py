"""ATV-Pruning token selection and statistic (methods.md section 6, official code).

Per decoder layer, with the *dense* layer and the current inputs ``in_j``:

1. Drift of every visual token t of sample j (torch ``cosine_similarity``, eps 1e-8,
   in the dtype of the inputs, i.e. the model dtype or fp32 as the caller chooses)::

       s_v(t) = 1 - cos(in_j[t], out_j[t])

2. Layer drift, token-weighted over the concatenation of all visual tokens of all
   samples (not a mean of per-sample means), as a Python float (``.item()``)::

       avg = mean(cat_j s_v(visual tokens of j))

   If no sample has a visual token, ``avg = 0.0`` (the reference would take the
   mean of an empty tensor, NaN); every budget is then 0.
3. Budget per sample (Python ``round``: half to even, 2.5 -> 2, 3.5 -> 4)::

       k_j = min(n_img_j, round(min(1, alpha * avg) * n_text_j))

   ``n_text_j`` counts every non-image token. ``k_j`` is clamped at 0 from below
   (a negative ``avg`` can only come from rounding of near-zero drifts; the
   reference would crash in ``topk``).
4. Selection: the ``k_j`` largest drifts of sample j, as positions **within the
   sample's image-token subsequence**, sorted ascending. Ties (the reference's
   ``topk`` leaves their order unspecified) prefer the lower index.
5. Statistic per Linear: the Wanda running mean with **one unit per sample** over
   ``[Z[~img]; Z[img][sel_j]]`` (text tokens first, then the selected visual tokens)::

       scaler_row = (1/N) * sum_j (sum_text z^2 + sum_selected_visual z^2)

Ablation token policies (methods.md 6.1, our parametrisation), all pure:

* text-only: an empty visual index (``text_only_indices()``), same as ``alpha = 0``;
* visual-only: ``visual_only_tokens(x, image_mask)`` = all visual tokens, no text;
* mixed: all tokens, i.e. plain Wanda;
* random, non-adaptive: ``random_visual_indices(n_img, k, generator)`` with
  ``k = fixed_ratio_budget(n_text, n_img, ratio)``;
* drift, non-adaptive: ``top_drift_indices(drift, fixed_ratio_budget(...))``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from atvprune.methods.wanda import RunningScaler


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _as_tokens(
    x: torch.Tensor, image_mask: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, image_mask)`` as ``(tokens, features)`` and ``(tokens,)``.

    A leading batch dimension of size 1 is dropped from either (the official code
    takes ``inp[0]`` of the hook input), so ``(1, L, d)`` with ``(L,)`` works.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
        raise ValueError(
            f"{name} must be (tokens, features) or (1, tokens, features), got {shape}"
        )
    if not isinstance(image_mask, torch.Tensor) or image_mask.dtype != torch.bool:
        raise ValueError(f"image_mask for {name} must be a bool tensor")
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if image_mask.dim() == 2 and image_mask.shape[0] == 1:
        image_mask = image_mask[0]
    if x.dim() != 2 or image_mask.shape != x.shape[:1]:
        raise ValueError(
            f"image_mask shape {tuple(image_mask.shape)} does not match the tokens "
            f"of {name} with shape {tuple(x.shape)}"
        )
    return x, image_mask.to(x.device)


def visual_drift(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """Per-token drift ``1 - cos(x_in, x_out)`` over the last dim (eps 1e-8).

    Computed in the dtype of the inputs; both must have the same shape.
    """
    if x_in.shape != x_out.shape:
        raise ValueError(
            f"x_in and x_out must have the same shape, got {tuple(x_in.shape)} and "
            f"{tuple(x_out.shape)}"
        )
    return 1 - F.cosine_similarity(x_in, x_out, dim=-1, eps=1e-8)


def atv_budget(mean_drift: float, alpha: float, n_text: int, n_img: int) -> int:
    """``k = min(n_img, round(min(1, alpha * mean_drift) * n_text))``, at least 0.

    Python ``round`` (half to even). ``alpha`` must be >= 0 and ``mean_drift`` finite.
    """
    n_text = _check_count("n_text", n_text)
    n_img = _check_count("n_img", n_img)
    if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
        raise ValueError(f"alpha must be a real number >= 0, got {alpha!r}")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not isinstance(mean_drift, numbers.Real) or not math.isfinite(mean_drift):
        raise ValueError(f"mean_drift must be a finite number, got {mean_drift!r}")
    k = round(min(1, alpha * mean_drift) * n_text)
    return max(0, min(n_img, k))


def fixed_ratio_budget(n_text: int, n_img: int, ratio: float) -> int:
    """Non-adaptive budget ``k = min(n_img, round(ratio * n_text))`` (half to even)."""
    n_text = _check_count("n_text", n_text)
    n_img = _check_count("n_img", n_img)
    if not isinstance(ratio, numbers.Real) or isinstance(ratio, bool):
        raise ValueError(f"ratio must be a real number >= 0, got {ratio!r}")
    if not math.isfinite(ratio) or ratio < 0:
        raise ValueError(f"ratio must be a finite number >= 0, got {ratio!r}")
    return min(n_img, round(ratio * n_text))


def top_drift_indices(drift: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest drifts, sorted ascending (ties: lower index)."""
    if not isinstance(drift, torch.Tensor) or drift.dim() != 1:
        shape = tuple(drift.shape) if isinstance(drift, torch.Tensor) else type(drift)
        raise ValueError(f"drift must be a 1-D tensor, got {shape}")
    k = _check_count("k", k)
    if k > drift.numel():
        raise ValueError(f"k={k} exceeds the number of visual tokens {drift.numel()}")
    order = torch.sort(drift, descending=True, stable=True).indices
    return torch.sort(order[:k]).values


def random_visual_indices(
    n_img: int, k: int, generator: torch.Generator
) -> torch.Tensor:
    """``k`` distinct random positions in ``[0, n_img)``, sorted ascending.

    ``randperm(n_img, generator)[:k]``; the caller owns the generator (fresh draws
    per layer come from not resetting it).
    """
    n_img = _check_count("n_img", n_img)
    k = _check_count("k", k)
    if k > n_img:
        raise ValueError(f"k={k} exceeds n_img={n_img}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {generator!r}")
    permutation = torch.randperm(n_img, generator=generator, device=generator.device)
    return torch.sort(permutation[:k]).values


def text_only_indices() -> torch.Tensor:
    """Text-only calibration: the empty visual index (same as ``alpha = 0``)."""
    return torch.zeros(0, dtype=torch.long)


def atv_select_from_drifts(
    drift_list: Sequence[torch.Tensor],
    n_text_list: Sequence[int],
    alpha: float,
) -> tuple[float, list[int], list[torch.Tensor]]:
    """Budgets and top-drift selection from per-sample drift vectors.

    Args:
        drift_list: per sample, the 1-D drifts of its visual tokens, in image-token
            order (its length is ``n_img_j``; it may be empty).
        n_text_list: per sample, the number of non-image tokens.
        alpha: ATV budget factor (official default 1).

    Returns:
        ``(avg, k_list, index_list)``: the token-weighted mean drift (Python float;
        0.0 if there is no visual token at all), the budgets
        ``k_j = min(n_img_j, round(min(1, alpha * avg) * n_text_j))`` and the
        ascending indices of the ``k_j`` largest drifts within each sample's
        image-token subsequence.
    """
    if len(drift_list) != len(n_text_list):
        raise ValueError(
            f"drift_list has {len(drift_list)} samples but n_text_list has "
            f"{len(n_text_list)}"
        )
    for j, drift in enumerate(drift_list):
        if not isinstance(drift, torch.Tensor) or drift.dim() != 1:
            raise ValueError(f"drift_list[{j}] must be a 1-D tensor")
    all_drifts = [drift for drift in drift_list if drift.numel() > 0]
    mean_drift = torch.cat(all_drifts).mean().item() if all_drifts else 0.0
    k_list: list[int] = []
    index_list: list[torch.Tensor] = []
    for drift, n_text in zip(drift_list, n_text_list, strict=True):
        k = atv_budget(mean_drift, alpha, n_text, drift.numel())
        k_list.append(k)
        index_list.append(top_drift_indices(drift, k))
    return mean_drift, k_list, index_list


def atv_select(
    x_in_list: Sequence[torch.Tensor],
    x_out_list: Sequence[torch.Tensor],
    image_mask_list: Sequence[torch.Tensor],
    alpha: float,
) -> tuple[float, list[int], list[torch.Tensor]]:
    """ATV selection from the dense layer's inputs and outputs of every sample.

    ``x_in_list[j]``/``x_out_list[j]`` are ``(tokens, d)`` (or ``(1, tokens, d)``)
    with ``image_mask_list[j]`` of shape ``(tokens,)`` (or ``(1, tokens)``); a
    batch of one may be present on either.
    Drifts ``visual_drift(x_in[mask], x_out[mask])`` are computed in the inputs'
    dtype, then ``atv_select_from_drifts`` gives ``(avg, k_list, index_list)``.
    """
    if not len(x_in_list) == len(x_out_list) == len(image_mask_list):
        raise ValueError(
            f"got {len(x_in_list)} inputs, {len(x_out_list)} outputs and "
            f"{len(image_mask_list)} image masks; they must match"
        )
    drift_list: list[torch.Tensor] = []
    n_text_list: list[int] = []
    for j, (x_in, x_out, image_mask) in enumerate(
        zip(x_in_list, x_out_list, image_mask_list, strict=True)
    ):
        x_in, _ = _as_tokens(x_in, image_mask, f"x_in_list[{j}]")
        x_out, image_mask = _as_tokens(x_out, image_mask, f"x_out_list[{j}]")
        drift_list.append(visual_drift(x_in[image_mask], x_out[image_mask]))
        n_text_list.append(int((~image_mask).sum().item()))
    return atv_select_from_drifts(drift_list, n_text_list, alpha)


def calibration_tokens(
    x: torch.Tensor, image_mask: torch.Tensor, visual_index: torch.Tensor
) -> torch.Tensor:
    """``cat([x[~mask], x[mask][visual_index]])``: text first, then selected visual.

    ``x`` is ``(tokens, in)`` or ``(1, tokens, in)``, ``image_mask`` is ``(tokens,)``
    or ``(1, tokens)``; ``visual_index`` indexes the image-token subsequence.
    Returns a 2-D ``(n_text + len(visual_index), in)`` tensor.
    """
    x, image_mask = _as_tokens(x, image_mask, "x")
    visual = x[image_mask]
    if visual_index.dim() != 1 or visual_index.dtype not in (torch.long, torch.int):
        raise ValueError(
            f"visual_index must be a 1-D integer tensor, got dtype "
            f"{visual_index.dtype} and shape {tuple(visual_index.shape)}"
        )
    if visual_index.numel() > 0 and not (
        0 <= int(visual_index.min()) and int(visual_index.max()) < visual.shape[0]
    ):
        raise ValueError(
            f"visual_index values must be in [0, {visual.shape[0]}), got min "
            f"{int(visual_index.min())}, max {int(visual_index.max())}"
        )
    return torch.cat([x[~image_mask], visual[visual_index.to(visual.device)]], dim=0)


def visual_only_tokens(x: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
    """Visual-only calibration (ablation): ``x[image_mask]``, no text token.

    Shapes as in ``calibration_tokens``; returns ``(n_img, in)``.
    """
    x, image_mask = _as_tokens(x, image_mask, "x")
    return x[image_mask]


def atv_scaler_row(
    samples: Sequence[torch.Tensor],
    image_mask_list: Sequence[torch.Tensor],
    index_list: Sequence[torch.Tensor],
) -> torch.Tensor:
    """ATV ``scaler_row``: Wanda running mean, one unit per sample, fp32, over
    ``calibration_tokens(samples[j], image_mask_list[j], index_list[j])``."""
    if not len(samples) == len(image_mask_list) == len(index_list):
        raise ValueError(
            f"got {len(samples)} samples, {len(image_mask_list)} image masks and "
            f"{len(index_list)} index tensors; they must match"
        )
    if len(samples) == 0:
        raise ValueError("samples must contain at least one (tokens, in) tensor")
    scaler = RunningScaler(samples[0].shape[-1], device=samples[0].device)
    for sample, image_mask, visual_index in zip(
        samples, image_mask_list, index_list, strict=True
    ):
        scaler.add(calibration_tokens(sample, image_mask, visual_index), unit=1)
    return scaler.value
