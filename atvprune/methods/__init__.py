"""Pure tensor math of every pruning method (no model plumbing, hooks or I/O).

Conventions: weights are ``(out, in)``; a calibration sample is a ``(tokens, in)``
tensor; masks are bool with **True = pruned**. See methods.md for the spec.
"""

from atvprune.methods.atv import (
    atv_budget,
    atv_scaler_row,
    atv_select,
    atv_select_from_drifts,
    calibration_tokens,
    fixed_ratio_budget,
    random_visual_indices,
    text_only_indices,
    top_drift_indices,
    visual_drift,
    visual_only_tokens,
)
from atvprune.methods.magnitude import magnitude_mask
from atvprune.methods.masks import (
    check_nm,
    check_sparsity,
    nm_mask_from_score,
    row_mask_from_score,
)
from atvprune.methods.sparsegpt import RunningHessian, hessian, sparsegpt_prune
from atvprune.methods.tamp import (
    ModalityDensity,
    amia_select,
    das_allocate,
    das_keep_counts,
    das_score,
    last_token_attention,
    modality_density,
)
from atvprune.methods.wanda import RunningScaler, scaler_row, wanda_mask, wanda_score

__all__ = [
    "ModalityDensity",
    "RunningHessian",
    "RunningScaler",
    "amia_select",
    "atv_budget",
    "atv_scaler_row",
    "atv_select",
    "atv_select_from_drifts",
    "calibration_tokens",
    "check_nm",
    "check_sparsity",
    "das_allocate",
    "das_keep_counts",
    "das_score",
    "fixed_ratio_budget",
    "hessian",
    "last_token_attention",
    "magnitude_mask",
    "modality_density",
    "nm_mask_from_score",
    "random_visual_indices",
    "row_mask_from_score",
    "scaler_row",
    "sparsegpt_prune",
    "text_only_indices",
    "top_drift_indices",
    "visual_drift",
    "visual_only_tokens",
    "wanda_mask",
    "wanda_score",
]
