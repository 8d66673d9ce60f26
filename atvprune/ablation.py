"""The paper's ablation table: which calibration tokens enter the statistic, and ATV's
alpha sweep, at one sparsity pattern (results/table_ablation.csv + a figure).

Every row is an ordinary pruning run of the DAG; only its token policy differs. The
benchmark columns, average and retention come from `atvprune.report.build_table`, so
they are computed exactly as in Table 1. Next to them:

* ``visual_tokens_per_sample``: the mean over decoder layers of the mean number of
  visual tokens per calibration sample that entered the statistic (``k_mean`` in
  prune_stats.json). Policies that take every visual token (all tokens = Wanda,
  visual-only) record no k; their cell is empty and ``calibration_tokens`` says "all".
* ``calibration_tokens``: the policy in words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from atvprune.report import (
    AVERAGE_COLUMN,
    RETENTION_COLUMN,
    _new_figure,
    _save_png,
    build_table,
    write_table_csv,
)

POLICY_WORDS = {
    "wanda": "all text + all visual tokens",
    "atv": "all text + top-k drift visual (adaptive k)",
    "atv_text_only": "text tokens only",
    "atv_visual_only": "visual tokens only (no text)",
    "atv_random_fixed": "all text + k random visual (fixed ratio)",
    "atv_drift_fixed": "all text + top-k drift visual (fixed ratio)",
}


def mean_visual_tokens(prune_stats_path: Path) -> float | None:
    """Mean over layers of the per-sample mean visual-token budget, or None when the
    run's policy records no budget (every visual token is used)."""
    # Read directly: report.load_prune_stats insists on ATV's drift, which the
    # drift-free policies (text-only, random) do not record.
    layers = json.loads(Path(prune_stats_path).read_text())["layers"]
    ks = [layer.get("k_mean") for layer in layers]
    if not ks or any(k is None for k in ks):
        return None
    return sum(ks) / len(ks)


def build_ablation_table(
    rows: Sequence[tuple[str, str, str, dict]],
    model: str,
    pattern: str,
    metric_files: Sequence[Path],
    prune_stats: dict[str, Path],
    benchmarks: Sequence[str],
) -> pd.DataFrame:
    """One line per ablation row (kind "policy" or "alpha", label, method, spec).

    ``metric_files`` must hold the dense run and every row's run of ``model``;
    ``prune_stats`` maps a row's method name to its prune_stats.json.
    """
    table = build_table(metric_files, benchmarks, model_order=[model])
    table = table[table["model"] == model]
    dense = table[table["method"] == "dense"]
    lines = []
    for kind, label, method, spec in rows:
        found = table[(table["method"] == method) & (table["pattern"] == pattern)]
        if len(found) != 1:
            raise ValueError(
                f"ablation row {kind}={label}: no results for run {method} at {pattern}"
            )
        tokens = mean_visual_tokens(prune_stats[method])
        words = POLICY_WORDS.get(spec["method"], spec["method"])
        if spec["method"] in ("wanda", "atv_visual_only"):
            words += " (all)"
        line = {
            "model": model,
            "ablation": kind,
            "row": label,
            "run": f"{method}_s{pattern}",
            "calibration_tokens": words,
            "visual_tokens_per_sample": None if tokens is None else round(tokens, 2),
        }
        for column in [*benchmarks, AVERAGE_COLUMN, RETENTION_COLUMN]:
            line[column] = found.iloc[0][column]
        lines.append(line)
    dense_line = {
        "model": model,
        "ablation": "reference",
        "row": "dense",
        "run": "dense",
        "calibration_tokens": "",
        "visual_tokens_per_sample": None,
        **{
            c: dense.iloc[0][c] for c in [*benchmarks, AVERAGE_COLUMN, RETENTION_COLUMN]
        },
    }
    return pd.DataFrame([dense_line, *lines])


def plot_ablation(df: pd.DataFrame, path: Path) -> None:
    """Left: average per token policy (bars). Right: ATV's alpha sweep, average vs
    alpha, each point labelled with the visual tokens kept per sample."""
    figure = _new_figure(11.0, 4.0)
    left, right = figure.subplots(1, 2)
    dense_average = float(df[df["row"] == "dense"][AVERAGE_COLUMN].iloc[0])
    policies = df[df["ablation"] == "policy"]
    left.barh(policies["row"], policies[AVERAGE_COLUMN], color="tab:blue")
    left.axvline(dense_average, color="black", linestyle="--", label="dense")
    left.set_xlabel("average score (0-100)")
    left.set_title("calibration tokens (same sparsity)")
    left.invert_yaxis()
    left.legend(loc="lower right", fontsize="small")
    sweep = df[df["ablation"] == "alpha"].copy()
    if len(sweep):
        sweep["alpha"] = sweep["row"].astype(float)
        sweep = sweep.sort_values("alpha")
        # alpha = 0 has no place on a log axis; a symlog axis keeps it.
        right.plot(sweep["alpha"], sweep[AVERAGE_COLUMN], marker="o", color="tab:red")
        right.set_xscale("symlog", linthresh=0.5)
        right.set_xticks(list(sweep["alpha"]))
        right.set_xticklabels([f"{a:g}" for a in sweep["alpha"]])
        for alpha, average, tokens in zip(
            sweep["alpha"],
            sweep[AVERAGE_COLUMN],
            sweep["visual_tokens_per_sample"],
            strict=True,
        ):
            label = "" if tokens is None or math.isnan(tokens) else f"{tokens:g} tok"
            right.annotate(
                label,
                (alpha, average),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize="small",
            )
        right.axhline(dense_average, color="black", linestyle="--")
    right.set_xlabel("ATV alpha")
    right.set_ylabel("average score (0-100)")
    right.set_title("alpha sweep (labels: visual tokens kept per sample)")
    right.grid(True, alpha=0.3)
    _save_png(figure, path)


def write_ablation(df: pd.DataFrame, csv_path: Path, figure_path: Path) -> None:
    write_table_csv(df, csv_path)
    plot_ablation(df, figure_path)
