"""Report library: the results table (table1.csv / .md) and the paper figures.

Inputs
------
* One metric JSON per (model, run, benchmark), written by the evaluate step
  (see :class:`MetricRecord`). ``headline = metrics[headline_metric] * headline_scale``
  is the number shown in the table (0-100 except MME perception, 0-2000).
* One ``prune_stats.json`` per pruned run (see :class:`PruneStats`), for the ATV
  per-layer figure.
* Optionally a CSV of the paper's published numbers (see :class:`ReportedValue`);
  only rows whose ``benchmark_or_column`` is ``retention`` are joined, and only
  where model, method and pattern match exactly. Nothing is ever guessed.

Table definitions (also in :data:`TABLE_NOTES`)
-----------------------------------------------
* benchmark column b: ``round(headline_b, 2)``.
* ``average = mean_b norm(headline_b)`` with ``norm(h) = h / 20`` for MME perception
  (``headline_metric == "mme_perception_score"`` and ``headline_scale == 1.0``,
  0-2000 -> 0-100) and ``norm(h) = h`` otherwise.
* ``retention = mean_b (headline_b / dense_headline_b) * 100`` over the benchmarks
  whose dense headline is not 0 (same model); the dense row is 100.
* ``delta = retention - reported`` (retention as shown, i.e. rounded).

average and retention are computed from the unrounded headlines and then rounded
to 2 decimals.

Determinism: files are read in sorted path order, every ordering is explicit, CSV
and PNG bytes do not depend on the order of the input lists, the clock, or the
matplotlib version string.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from atvprune.patterns import DENSE, PatternKey, parse_pattern

PathLike = str | os.PathLike[str]

MME_PERCEPTION_METRIC = "mme_perception_score"
MME_TO_PERCENT_DIVISOR = 20.0  # 0-2000 perception points -> 0-100
RETENTION_COLUMN = "retention"
AVERAGE_COLUMN = "average"
REPORTED_COLUMN = "reported"
DELTA_COLUMN = "delta"
KEY_COLUMNS = ("model", "method", "pattern")
FIGURE_DPI = 150
# Drop the "Software: matplotlib version ..." tEXt chunk so PNG bytes do not change
# with the matplotlib version; Agg writes no timestamp into PNGs.
PNG_METADATA: dict[str, str | None] = {"Software": None}
NM_MARKERS = ("s", "^", "D", "v", "P", "X")

TABLE_NOTES: list[str] = [
    "Benchmark columns: one headline metric per lmms-eval task, rounded to 2 "
    "decimals: accuracy x100 for OK-VQA, VizWiz, TextVQA, GQA, POPE, ScienceQA-IMG "
    "and MMMU; gpt_eval_score (0-100) for MMBench-en-dev; perception score (0-2000) "
    "for MME.",
    "average: mean of the benchmark headline values, with MME perception divided "
    "by 20 so that every term is on a 0-100 scale.",
    "retention: mean over benchmarks of (pruned headline / dense headline of the "
    "same model) x 100; the dense row is 100.00. A benchmark whose dense headline "
    "is 0 is left out of that model's mean (listed in the notes when it happens).",
    "average and retention are computed from unrounded headlines, then rounded to "
    "2 decimals.",
    "reported: the paper's published retention, only where its model and setting "
    "are known (empty otherwise); delta = retention - reported.",
]


# ----------------------------------------------------------------------------
# Input records
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRecord:
    """One metric JSON file: the score of one run of one model on one benchmark."""

    model: str
    run: str
    method: str
    pattern: str
    benchmark: str
    n_items: int
    scoring_mode: str
    metrics: Mapping[str, Any]
    headline_metric: str
    headline_scale: float
    headline: float
    predictions: str
    predictions_sha256: str
    source: str  # path of the JSON file, for error messages


@dataclass(frozen=True)
class LayerStats:
    """Per decoder layer entry of prune_stats.json (drift/k only for ATV)."""

    layer: int
    sparsity: float
    mean_drift: float | None
    k_mean: float | None
    k: tuple[float, ...] | None


@dataclass(frozen=True)
class PruneStats:
    """One prune_stats.json file."""

    model: str
    run: str
    method: str
    pattern: str
    overall_sparsity: float
    layers: tuple[LayerStats, ...]
    wall_time_s: float | None
    peak_memory_mb: float | None
    source: str


@dataclass(frozen=True)
class ReportedValue:
    """One row of the reported-values CSV (the paper's published numbers)."""

    model: str
    method: str
    pattern: str
    column: str  # the CSV's benchmark_or_column
    value: float
    source: str


# ----------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------


def _read_json_object(path: PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at top level")
    return data


def _require(data: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in data or data[key] is None:
        raise ValueError(f"{source}: missing required key {key!r}")
    return data[key]


def _require_str(data: Mapping[str, Any], key: str, source: str) -> str:
    value = _require(data, key, source)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{source}: key {key!r} must be a non-empty string")
    return value


def _as_number(value: Any, key: str, source: str) -> float:
    # bool is an int subclass; a true/false score is a bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{source}: key {key!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{source}: key {key!r} must be finite, got {value!r}")
    return number


def _require_number(data: Mapping[str, Any], key: str, source: str) -> float:
    return _as_number(_require(data, key, source), key, source)


def _optional_number(data: Mapping[str, Any], key: str, source: str) -> float | None:
    value = data.get(key)
    return None if value is None else _as_number(value, key, source)


def _check_dense_consistency(method: str, pattern: str, source: str) -> None:
    if (method == DENSE) != (pattern == DENSE):
        raise ValueError(
            f"{source}: method {method!r} and pattern {pattern!r} disagree "
            f"(the dense model has method and pattern {DENSE!r})"
        )


# ----------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------


def load_metric_file(path: PathLike) -> MetricRecord:
    """Read and validate one metric JSON file.

    Checks: all keys present and typed, pattern parseable, dense method <-> dense
    pattern, ``headline == metrics[headline_metric] * headline_scale`` (relative
    tolerance 1e-6).
    """
    source = str(path)
    data = _read_json_object(path)
    metrics = _require(data, "metrics", source)
    if not isinstance(metrics, dict):
        raise ValueError(f"{source}: key 'metrics' must be an object")
    headline_metric = _require_str(data, "headline_metric", source)
    if headline_metric not in metrics:
        raise ValueError(
            f"{source}: headline_metric {headline_metric!r} missing from 'metrics'"
        )
    native = _as_number(metrics[headline_metric], f"metrics.{headline_metric}", source)
    scale = _require_number(data, "headline_scale", source)
    if scale <= 0:
        raise ValueError(f"{source}: headline_scale must be > 0, got {scale}")
    headline = _require_number(data, "headline", source)
    if not math.isclose(headline, native * scale, rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(
            f"{source}: headline {headline} != metrics[{headline_metric!r}] * "
            f"headline_scale = {native * scale}"
        )
    n_items = _require(data, "n_items", source)
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 0:
        raise ValueError(f"{source}: key 'n_items' must be an integer >= 0")
    method = _require_str(data, "method", source)
    pattern = _require_str(data, "pattern", source)
    try:
        parse_pattern(pattern)
    except ValueError as err:
        raise ValueError(f"{source}: key 'pattern': {err}") from None
    _check_dense_consistency(method, pattern, source)
    return MetricRecord(
        model=_require_str(data, "model", source),
        run=_require_str(data, "run", source),
        method=method,
        pattern=pattern,
        benchmark=_require_str(data, "benchmark", source),
        n_items=n_items,
        scoring_mode=_require_str(data, "scoring_mode", source),
        metrics=dict(metrics),
        headline_metric=headline_metric,
        headline_scale=scale,
        headline=headline,
        predictions=_require_str(data, "predictions", source),
        predictions_sha256=_require_str(data, "predictions_sha256", source),
        source=source,
    )


def _load_layer(entry: Any, index: int, source: str) -> LayerStats:
    where = f"{source}: layers[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    layer = _require(entry, "layer", where)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"{where}: key 'layer' must be an integer")
    k_raw = entry.get("k")
    k: tuple[float, ...] | None = None
    if k_raw is not None:
        if not isinstance(k_raw, list):
            raise ValueError(f"{where}: key 'k' must be a list")
        k = tuple(_as_number(v, "k", where) for v in k_raw)
    return LayerStats(
        layer=layer,
        sparsity=_require_number(entry, "sparsity", where),
        mean_drift=_optional_number(entry, "mean_drift", where),
        k_mean=_optional_number(entry, "k_mean", where),
        k=k,
    )


def load_prune_stats(path: PathLike) -> PruneStats:
    """Read and validate one prune_stats.json.

    ATV runs (method ``atv``) must give ``mean_drift`` and ``k_mean`` for every
    layer. ``wall_time_s`` and ``peak_memory_mb`` may be absent or null.
    """
    source = str(path)
    data = _read_json_object(path)
    method = _require_str(data, "method", source)
    pattern = _require_str(data, "pattern", source)
    try:
        parse_pattern(pattern)
    except ValueError as err:
        raise ValueError(f"{source}: key 'pattern': {err}") from None
    raw_layers = _require(data, "layers", source)
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ValueError(f"{source}: key 'layers' must be a non-empty list")
    layers = tuple(_load_layer(e, i, source) for i, e in enumerate(raw_layers))
    if method == "atv":
        for i, layer in enumerate(layers):
            for key in ("mean_drift", "k_mean"):
                if getattr(layer, key) is None:
                    raise ValueError(
                        f"{source}: layers[{i}] missing required key {key!r} "
                        "(needed for ATV runs)"
                    )
    return PruneStats(
        model=_require_str(data, "model", source),
        run=_require_str(data, "run", source),
        method=method,
        pattern=pattern,
        overall_sparsity=_require_number(data, "overall_sparsity", source),
        layers=layers,
        wall_time_s=_optional_number(data, "wall_time_s", source),
        peak_memory_mb=_optional_number(data, "peak_memory_mb", source),
        source=source,
    )


REPORTED_CSV_COLUMNS = ("model", "method", "pattern", "benchmark_or_column", "value")


def load_reported_csv(path: PathLike) -> list[ReportedValue]:
    """Read the reported-values CSV (columns model, method, pattern,
    benchmark_or_column, value, source). Every row needs a parseable pattern and
    a numeric value; the same key twice with different values is an error."""
    source = str(path)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for key in (*REPORTED_CSV_COLUMNS, "source"):
            if key not in header:
                raise ValueError(f"{source}: missing required column {key!r}")
        rows = list(reader)
    values: list[ReportedValue] = []
    seen: dict[tuple[str, str, PatternKey, str], float] = {}
    for line_no, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{source}: line {line_no}"
        for key in REPORTED_CSV_COLUMNS:
            if not (row.get(key) or "").strip():
                raise ValueError(f"{where}: missing value for column {key!r}")
        text = row["value"].strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"{where}: column 'value' is not a number: {text!r}"
            ) from None
        try:
            pattern_key = parse_pattern(row["pattern"].strip())
        except ValueError as err:
            raise ValueError(f"{where}: column 'pattern': {err}") from None
        item = ReportedValue(
            model=row["model"].strip(),
            method=row["method"].strip(),
            pattern=row["pattern"].strip(),
            column=row["benchmark_or_column"].strip(),
            value=value,
            source=(row.get("source") or "").strip(),
        )
        key = (item.model, item.method, pattern_key, item.column)
        if key in seen and seen[key] != value:
            raise ValueError(f"{where}: conflicting duplicate reported value for {key}")
        seen[key] = value
        values.append(item)
    return values


# ----------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------


def normalized_headline(record: MetricRecord) -> float:
    """Headline on a 0-100 scale for the average: MME perception (native 0-2000,
    ``headline_scale == 1``) is divided by 20, everything else is kept."""
    if record.headline_metric == MME_PERCEPTION_METRIC and record.headline_scale == 1.0:
        return record.headline / MME_TO_PERCENT_DIVISOR
    return record.headline


def _round2(value: float) -> float:
    # "+ 0.0" turns -0.0 into 0.0 so the CSV never shows "-0.00".
    return round(value, 2) + 0.0 if math.isfinite(value) else math.nan


def _check_column_consistency(records: Sequence[MetricRecord]) -> None:
    """All rows of one benchmark column must be scored the same way."""
    for field in ("headline_metric", "headline_scale", "scoring_mode", "n_items"):
        first: dict[str, MetricRecord] = {}
        for record in records:
            ref = first.setdefault(record.benchmark, record)
            if getattr(record, field) != getattr(ref, field):
                raise ValueError(
                    f"benchmark {record.benchmark!r}: {field} differs between "
                    f"{ref.source} ({getattr(ref, field)!r}) and {record.source} "
                    f"({getattr(record, field)!r})"
                )


def _index_records(
    records: Sequence[MetricRecord],
) -> tuple[dict[tuple[str, str], dict[str, MetricRecord]], list[str]]:
    """Group records by (model, run) -> benchmark, rejecting duplicates and runs
    whose method/pattern differ between benchmark files."""
    by_run: dict[tuple[str, str], dict[str, MetricRecord]] = {}
    models: list[str] = []
    for record in records:
        if record.model not in models:
            models.append(record.model)
        files = by_run.setdefault((record.model, record.run), {})
        if record.benchmark in files:
            raise ValueError(
                f"two metric files for (model={record.model!r}, run={record.run!r}, "
                f"benchmark={record.benchmark!r}): {files[record.benchmark].source} "
                f"and {record.source}"
            )
        for other in files.values():
            if (other.method, other.pattern) != (record.method, record.pattern):
                raise ValueError(
                    f"run {record.run!r} of model {record.model!r} has method/pattern "
                    f"{other.method}/{other.pattern} in {other.source} but "
                    f"{record.method}/{record.pattern} in {record.source}"
                )
        files[record.benchmark] = record
    return by_run, models


def _order_methods(seen: list[str], method_order: Sequence[str] | None) -> list[str]:
    pruned = [m for m in seen if m != DENSE]
    if method_order is None:
        return pruned
    order = [m for m in method_order if m != DENSE]
    unknown = [m for m in pruned if m not in order]
    if unknown:
        raise ValueError(f"methods {unknown} are not in method_order {list(order)}")
    return [m for m in order if m in pruned]


def _order_models(seen: list[str], model_order: Sequence[str] | None) -> list[str]:
    if model_order is None:
        return seen
    unknown = [m for m in seen if m not in model_order]
    if unknown:
        raise ValueError(f"models {unknown} are not in model_order {list(model_order)}")
    return [m for m in model_order if m in seen]


def _column_labels(
    benchmarks: Sequence[str], benchmark_labels: Mapping[str, str] | None
) -> list[str]:
    labels = [(benchmark_labels or {}).get(b, b) for b in benchmarks]
    reserved = {*KEY_COLUMNS, AVERAGE_COLUMN, RETENTION_COLUMN}
    reserved |= {REPORTED_COLUMN, DELTA_COLUMN}
    clashes = [label for label in labels if label in reserved]
    if clashes:
        raise ValueError(f"benchmark column labels {clashes} clash with fixed columns")
    if len(set(labels)) != len(labels):
        raise ValueError(f"benchmark column labels are not unique: {labels}")
    return labels


def _reported_lookup(
    reported_csv: PathLike | None,
) -> dict[tuple[str, str, PatternKey], float]:
    if reported_csv is None:
        return {}
    return {
        (r.model, r.method, parse_pattern(r.pattern)): r.value
        for r in load_reported_csv(reported_csv)
        if r.column == RETENTION_COLUMN
    }


def build_table(
    metric_files: Sequence[PathLike],
    benchmarks: Sequence[str],
    reported_csv: PathLike | None = None,
    benchmark_labels: Mapping[str, str] | None = None,
    method_order: Sequence[str] | None = None,
    model_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Build the results table: one row per (model, method, pattern).

    Rows: per model, the dense row first, then methods in ``method_order``
    (default: order of first appearance in the metric files sorted by path, so
    shuffling ``metric_files`` changes nothing), patterns within a method by
    :attr:`PatternKey.sort_key`. Models in ``model_order`` (default: first
    appearance, same rule).

    Columns: model, method, pattern, one column per benchmark (label from
    ``benchmark_labels``, default the task name) holding ``round(headline, 2)``,
    ``average``, ``retention`` (see the module docstring) and, when
    ``reported_csv`` is given, ``reported`` and ``delta`` (NaN where no published
    retention is known for that model/method/pattern).

    Metric files of benchmarks not in ``benchmarks`` are ignored, but every
    (model, run) seen in any file must have a file for every benchmark, and every
    model a dense run. All rows of one benchmark column must share
    headline_metric, headline_scale, scoring_mode and n_items.
    ``df.attrs["notes"]`` lists benchmarks left out of a model's retention
    because the dense headline is 0.
    """
    benchmarks = list(benchmarks)
    if not benchmarks:
        raise ValueError("benchmarks must not be empty")
    if len(set(benchmarks)) != len(benchmarks):
        raise ValueError(f"benchmarks contain duplicates: {benchmarks}")
    labels = _column_labels(benchmarks, benchmark_labels)
    if not metric_files:
        raise ValueError("no metric files given")

    # Sorted paths: the only place input order could leak into the output.
    loaded = [load_metric_file(p) for p in sorted(str(p) for p in metric_files)]
    records = [r for r in loaded if r.benchmark in benchmarks]
    if not records:
        raise ValueError(f"no metric file is for any of the benchmarks {benchmarks}")
    _check_column_consistency(records)
    by_run, seen_models = _index_records(records)
    models = _order_models(seen_models, model_order)
    seen_methods: list[str] = []
    for record in records:
        if record.method not in seen_methods:
            seen_methods.append(record.method)
    methods = _order_methods(seen_methods, method_order)

    # Every run seen in any file (even one only for other benchmarks) needs all
    # benchmarks, so a half-evaluated run cannot silently drop out of the table.
    for model, run in dict.fromkeys((r.model, r.run) for r in loaded):
        files = by_run.get((model, run), {})
        for benchmark in benchmarks:
            if benchmark not in files:
                raise ValueError(
                    f"missing metric file for (model={model!r}, run={run!r}, "
                    f"benchmark={benchmark!r})"
                )

    # (model, method, pattern key) -> run files; one run per table row.
    rows_by_key: dict[tuple[str, str, PatternKey], dict[str, MetricRecord]] = {}
    for (model, run), files in by_run.items():
        any_file = files[benchmarks[0]]
        key = (model, any_file.method, parse_pattern(any_file.pattern))
        if key in rows_by_key:
            other = rows_by_key[key][benchmarks[0]]
            raise ValueError(
                f"runs {other.run!r} and {run!r} of model {model!r} both are "
                f"method {any_file.method!r} pattern {any_file.pattern!r}"
            )
        rows_by_key[key] = files

    reported = _reported_lookup(reported_csv)
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    for model in models:
        dense_key = (model, DENSE, PatternKey("dense", 0.0))
        if dense_key not in rows_by_key:
            raise ValueError(f"no dense run for model {model!r} (needed for retention)")
        dense = rows_by_key[dense_key]
        kept = [b for b in benchmarks if dense[b].headline != 0.0]
        for benchmark in benchmarks:
            if benchmark not in kept:
                notes.append(
                    f"retention of model {model!r} excludes {benchmark!r}: "
                    "the dense headline is 0."
                )
        keys = [dense_key]
        for method in methods:
            patterns = [k[2] for k in rows_by_key if k[0] == model and k[1] == method]
            keys += [(model, method, p) for p in sorted(patterns, key=_sort_key)]
        for key in keys:
            files = rows_by_key[key]
            rows.append(
                _table_row(files, dense, benchmarks, labels, kept, key, reported)
            )
            if reported_csv is None:
                for column in (REPORTED_COLUMN, DELTA_COLUMN):
                    rows[-1].pop(column)

    table = pd.DataFrame(rows)
    table.attrs["notes"] = notes
    return table


def _sort_key(pattern: PatternKey) -> tuple[int, float, int, int]:
    return pattern.sort_key


def _table_row(
    files: Mapping[str, MetricRecord],
    dense: Mapping[str, MetricRecord],
    benchmarks: Sequence[str],
    labels: Sequence[str],
    kept: Sequence[str],
    key: tuple[str, str, PatternKey],
    reported: Mapping[tuple[str, str, PatternKey], float],
) -> dict[str, Any]:
    """One table row: rounded headlines, average, retention, reported, delta."""
    model, method, _ = key
    first = files[benchmarks[0]]
    row: dict[str, Any] = {"model": model, "method": method, "pattern": first.pattern}
    for benchmark, label in zip(benchmarks, labels, strict=True):
        row[label] = _round2(files[benchmark].headline)
    normalized = [normalized_headline(files[b]) for b in benchmarks]
    row[AVERAGE_COLUMN] = _round2(sum(normalized) / len(normalized))
    if method == DENSE:
        retention = 100.0
    elif kept:
        ratios = [files[b].headline / dense[b].headline for b in kept]
        retention = 100.0 * sum(ratios) / len(ratios)
    else:
        retention = math.nan
    row[RETENTION_COLUMN] = _round2(retention)
    published = reported.get(key, math.nan)
    row[REPORTED_COLUMN] = published
    row[DELTA_COLUMN] = _round2(row[RETENTION_COLUMN] - published)
    return row


# ----------------------------------------------------------------------------
# Writers (atomic: temp file in the same directory, then os.replace)
# ----------------------------------------------------------------------------


def _atomic_write_bytes(path: PathLike, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def table_to_csv(df: pd.DataFrame) -> str:
    """CSV text: floats as %.2f, NaN as an empty cell, "\\n" line endings."""
    return df.to_csv(index=False, float_format="%.2f", na_rep="", lineterminator="\n")


def write_table_csv(df: pd.DataFrame, path: PathLike) -> None:
    """Write :func:`table_to_csv` atomically."""
    _atomic_write_bytes(path, table_to_csv(df).encode("utf-8"))


def _markdown_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def table_to_markdown(df: pd.DataFrame, notes: Iterable[str]) -> str:
    """Markdown table followed by a "Notes" list: :data:`TABLE_NOTES`, then
    ``df.attrs["notes"]``, then ``notes`` (duplicates dropped, order kept)."""
    columns = [str(c) for c in df.columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if c in KEY_COLUMNS else "---:" for c in columns) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    all_notes: list[str] = []
    for note in [*TABLE_NOTES, *df.attrs.get("notes", []), *notes]:
        if note not in all_notes:
            all_notes.append(note)
    lines += ["", "## Notes", ""] + [f"- {note}" for note in all_notes]
    return "\n".join(lines) + "\n"


def write_table_markdown(df: pd.DataFrame, path: PathLike, notes: list[str]) -> None:
    """Write :func:`table_to_markdown` atomically."""
    _atomic_write_bytes(path, table_to_markdown(df, notes).encode("utf-8"))


# ----------------------------------------------------------------------------
# Figures (explicit Agg canvas, no pyplot global state)
# ----------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure: Figure, path: PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata=PNG_METADATA)
    _atomic_write_bytes(path, buffer.getvalue())


def _method_colors(methods: Sequence[str]) -> dict[str, Any]:
    palette = matplotlib.colormaps["tab10"]
    return {method: palette(i % 10) for i, method in enumerate(methods)}


def plot_accuracy_vs_sparsity(df: pd.DataFrame, path: PathLike) -> None:
    """Average (left) and retention (right) vs sparsity, one row of panels per
    model. One line with markers per method over its unstructured patterns; the
    dense value is a horizontal dashed line; N:M patterns are hollow markers at
    x = n/m (0.5 for 2:4 and 4:8), one marker shape per N:M pattern."""
    for column in (*KEY_COLUMNS, AVERAGE_COLUMN, RETENTION_COLUMN):
        if column not in df.columns:
            raise ValueError(f"table is missing column {column!r}")
    models = list(dict.fromkeys(df["model"]))
    methods = [m for m in dict.fromkeys(df["method"]) if m != DENSE]
    if not models:
        raise ValueError("table has no rows")
    nm_patterns = sorted(
        {p for p in df["pattern"] if parse_pattern(p).kind == "nm"},
        key=lambda p: parse_pattern(p).sort_key,
    )
    nm_marker = {p: NM_MARKERS[i % len(NM_MARKERS)] for i, p in enumerate(nm_patterns)}
    colors = _method_colors(methods)
    figure = _new_figure(11.0, 4.0 * len(models))
    axes = figure.subplots(len(models), 2, squeeze=False)
    for model, panel_row in zip(models, axes, strict=True):
        rows = df[df["model"] == model]
        panels = ((AVERAGE_COLUMN, "average score (0-100)"), (RETENTION_COLUMN, "%"))
        for ax, (column, ylabel) in zip(panel_row, panels, strict=True):
            _plot_metric_panel(ax, rows, column, methods, colors, nm_marker)
            ax.set_title(f"{model}: {column} vs sparsity")
            ax.set_xlabel("sparsity (fraction of pruned weights)")
            ax.set_ylabel(
                f"{column} {ylabel}" if column == RETENTION_COLUMN else ylabel
            )
            ax.grid(True, alpha=0.3)
    handles = [
        Line2D([], [], color=colors[m], marker="o", label=m) for m in methods
    ] + [Line2D([], [], color="black", linestyle="--", label=DENSE)]
    handles += [
        Line2D(
            [],
            [],
            color="gray",
            marker=nm_marker[p],
            linestyle="none",
            markerfacecolor="none",
            label=f"{p} (N:M)",
        )
        for p in nm_patterns
    ]
    # Outside the panels so it never hides the dense line or a point.
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    _save_png(figure, path)


def _plot_metric_panel(
    ax: Any,
    rows: pd.DataFrame,
    column: str,
    methods: Sequence[str],
    colors: Mapping[str, Any],
    nm_marker: Mapping[str, str],
) -> None:
    dense_rows = rows[rows["method"] == DENSE]
    for value in dense_rows[column]:
        ax.axhline(float(value), color="black", linestyle="--", linewidth=1.0)
    for method in methods:
        points = []  # (x, y) of unstructured patterns, x ascending
        for pattern, value in zip(
            rows.loc[rows["method"] == method, "pattern"],
            rows.loc[rows["method"] == method, column],
            strict=True,
        ):
            key = parse_pattern(pattern)
            if key.kind == "nm":
                ax.plot(
                    [key.ratio],
                    [float(value)],
                    linestyle="none",
                    marker=nm_marker[pattern],
                    markersize=8,
                    markerfacecolor="none",
                    markeredgewidth=1.5,
                    color=colors[method],
                )
            else:
                points.append((key.ratio, float(value)))
        points.sort()
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", color=colors[method])


def plot_atv_layers(
    prune_stats_files: Sequence[PathLike], path: PathLike, method: str = "atv"
) -> None:
    """Per-layer mean visual drift (left axis, solid) and mean visual-token budget
    k (right axis, dashed) vs layer index for every ``method`` run, one colour per
    sparsity pattern, one panel per model. Other methods' files are skipped."""
    stats = [load_prune_stats(p) for p in sorted(str(p) for p in prune_stats_files)]
    runs = [s for s in stats if s.method == method]
    if not runs:
        sources = [s.source for s in stats]
        raise ValueError(f"no prune_stats file with method {method!r} in {sources}")
    runs.sort(key=lambda s: (s.model, parse_pattern(s.pattern).sort_key, s.run))
    models = list(dict.fromkeys(s.model for s in runs))
    figure = _new_figure(8.0, 4.0 * len(models))
    axes = figure.subplots(len(models), 1, squeeze=False)
    palette = matplotlib.colormaps["tab10"]
    for model, (ax_drift,) in zip(models, axes, strict=True):
        ax_k = ax_drift.twinx()
        model_runs = [s for s in runs if s.model == model]
        patterns = [s.pattern for s in model_runs]
        handles = []
        for i, run in enumerate(model_runs):
            label = f"sparsity {run.pattern}"
            if patterns.count(run.pattern) > 1:
                label += f" ({run.run})"  # several runs at one sparsity (ablations)
            layers = sorted(run.layers, key=lambda layer: layer.layer)
            xs = [layer.layer for layer in layers]
            color = palette(i % 10)
            ax_drift.plot(
                xs, [lay.mean_drift for lay in layers], color=color, marker="o"
            )
            k_means = [lay.k_mean for lay in layers]
            ax_k.plot(xs, k_means, color=color, linestyle="--", marker="x")
            handles.append(Line2D([], [], color=color, marker="o", label=label))
        handles += [
            Line2D([], [], color="gray", label="mean drift (left)"),
            Line2D(
                [], [], color="gray", linestyle="--", marker="x", label="mean k (right)"
            ),
        ]
        ax_drift.set_title(f"{model}: {method} per-layer visual drift and budget")
        ax_drift.set_xlabel("decoder layer index")
        ax_drift.set_ylabel("mean visual drift 1 - cos(in, out)")
        ax_k.set_ylabel("mean visual tokens kept per sample (k)")
        ax_drift.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_drift.grid(True, alpha=0.3)
        # Below the panel: inside it would hide lines of one of the two y axes.
        ax_drift.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.15),
            ncols=min(4, len(handles)),
            fontsize="small",
        )
    _save_png(figure, path)


def plot_placeholder(path: PathLike, message: str) -> None:
    """A small figure stating why a plot is empty (e.g. no ATV run configured)."""
    figure = _new_figure(4.0, 1.5)
    axes = figure.add_subplot(1, 1, 1)
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center")
    _save_png(figure, path)
