"""Provenance of every number in the results table (results/table1.provenance.json).

For each table row (model, method, pattern) it records the config entry it came from,
the checkpoint it evaluated (path, sha256, format and size, base model and calibration
pool hashes, per-Linear mask hashes, seed, git commit and package versions of the prune
job) and, for every benchmark cell, the metric file and the predictions file it was
scored from (path + sha256), the scoring mode, the dataset identity and the evaluate
job's git commit and package versions (a key into the document's `environments`,
where each distinct set of versions is stored once). Derived cells (average,
retention, reported, delta) name their formula and the reported value's source.

Nothing is copied on trust: predictions, metric files and checkpoints are hashed again
and compared with the hashes their records carry, so a file changed after it was scored
is an error naming it rather than a silently wrong trail.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atvprune.io import environment, git_commit, sha256_dir, sha256_file
from atvprune.patterns import parse_pattern

FORMAT = "atvprune-provenance/1"
# Keys every metric JSON must carry for its cell to be traceable.
METRIC_KEYS = (
    "model",
    "run",
    "method",
    "pattern",
    "benchmark",
    "scoring_mode",
    "headline",
    "headline_metric",
    "headline_scale",
    "n_items",
    "predictions",
    "predictions_sha256",
    "checkpoint",
    "checkpoint_sha256",
    "model_state_sha256",
    "dataset",
    "git_commit",
    "environment",
)
PRUNE_STATS_KEYS = ("mask_sha256", "overall_sparsity", "method", "pattern")
PRUNE_PROVENANCE_KEYS = (
    "base_model",
    "base_model_sha256",
    "calibration_pool",
    "calibration_pool_sha256",
    "seed",
    "git_commit",
    "environment",
)
DERIVED = {
    "average": "mean over benchmarks of the headline, MME perception / 20",
    "retention": "mean over benchmarks of headline / dense headline x 100",
    "delta": "retention - reported",
}


def dataset_identity(source: Mapping[str, Any]) -> dict:
    """What a benchmark was loaded from: its config entry, plus the sha256 of a
    local copy (a hub dataset is identified by its pinned revision)."""
    identity = {key: source[key] for key in sorted(source)}
    local = source.get("local_path")
    if local:
        identity["sha256"] = sha256_dir(Path(local)) if Path(local).exists() else None
    return identity


def _read_record(path: Path, keys: Sequence[str], what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path}: not valid JSON ({error})") from None
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"{what} {path}: missing required field(s) {missing}")
    return data


def _checked_file(path: str, recorded: str, record: Path, what: str) -> dict:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{what} {file} named by {record} does not exist")
    actual = sha256_file(file)
    if actual != recorded:
        raise ValueError(
            f"{what} {file} has sha256 {actual}, but {record} records {recorded}: "
            "it changed after scoring; re-run its evaluation"
        )
    return {"path": str(file), "sha256": actual}


def checkpoint_record(checkpoint: str | Path, recorded_sha: str, metric: Path) -> dict:
    """Identity of the model directory a metric file was scored from: its records
    are checked first (a missing field is named), then its hash against `metric`'s."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} named by {metric} does not exist")
    record: dict[str, Any] = {"path": str(path)}
    manifest = path / "checkpoint.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        record.update(
            format=data.get("format"),
            encodings=sorted(set(data.get("tensors", {}).values())),
            stored_bytes=data.get("bytes", {}).get("stored"),
            dense_bytes=data.get("bytes", {}).get("dense"),
        )
    else:
        record["format"] = "save_pretrained"
    stats_path, prov_path = path / "prune_stats.json", path / "provenance.json"
    if stats_path.exists() or prov_path.exists():
        stats = _read_record(stats_path, PRUNE_STATS_KEYS, "prune record")
        prune = _read_record(prov_path, PRUNE_PROVENANCE_KEYS, "prune record")
        record["mask_sha256"] = stats["mask_sha256"]
        record["overall_sparsity"] = stats["overall_sparsity"]
        record["prune"] = {key: prune[key] for key in PRUNE_PROVENANCE_KEYS}
    actual = sha256_dir(path)
    if actual != recorded_sha:
        raise ValueError(
            f"checkpoint {path} has sha256 {actual}, but {metric} was scored from "
            f"{recorded_sha}; re-run its evaluation"
        )
    return {"sha256": actual, **record}


def _reported_rows(reported_csv: Path | None) -> list[dict]:
    if reported_csv is None:
        return []
    with open(reported_csv, newline="", encoding="utf-8") as handle:
        return [dict(row, line=i) for i, row in enumerate(csv.DictReader(handle), 2)]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def build_provenance(
    table,
    metric_files: Sequence[str | Path],
    benchmarks: Sequence[str],
    model_specs: Mapping[str, Any],
    method_specs: Mapping[str, Any],
    table_path: str | Path,
    reported_csv: str | Path | None = None,
) -> dict:
    """The provenance document of `table` (a DataFrame from report.build_table)."""
    metrics: dict[tuple[str, str, str], tuple[Path, dict]] = {}
    for path in sorted(Path(p) for p in metric_files):
        data = _read_record(path, METRIC_KEYS, "metric file")
        if data["benchmark"] in benchmarks:
            key = (data["model"], data["method"], data["pattern"])
            metrics[(*key, data["benchmark"])] = (path, data)
    reported = _reported_rows(Path(reported_csv) if reported_csv else None)
    environments = _Environments()
    rows = []
    for row in table.to_dict(orient="records"):
        model, method, pattern = row["model"], row["method"], row["pattern"]
        cells, checkpoint = {}, None
        for benchmark in benchmarks:
            path, data = metrics[(model, method, pattern, benchmark)]
            if checkpoint is None:
                checkpoint = checkpoint_record(
                    data["checkpoint"], data["checkpoint_sha256"], path
                )
                checkpoint["model_state_sha256"] = data["model_state_sha256"]
                if "prune" in checkpoint:
                    prune = checkpoint["prune"]
                    prune["environment"] = environments.add(prune["environment"])
                run = data["run"]
            cells[benchmark] = {
                "value": _number(row[benchmark]),
                "headline": data["headline"],
                "headline_metric": data["headline_metric"],
                "headline_scale": data["headline_scale"],
                "n_items": data["n_items"],
                "scoring_mode": data["scoring_mode"],
                "metric_file": {"path": str(path), "sha256": sha256_file(path)},
                "predictions": _checked_file(
                    data["predictions"], data["predictions_sha256"], path, "predictions"
                ),
                "dataset": data["dataset"],
                "git_commit": data["git_commit"],
                "environment": environments.add(data["environment"]),
            }
        rows.append(
            {
                "model": model,
                "method": method,
                "pattern": pattern,
                "run": run,
                "config": {
                    "model": model_specs.get(model),
                    "method": (
                        {"method": "dense"}
                        if method == "dense"
                        else method_specs.get(method)
                    ),
                    "pattern": pattern,
                },
                "checkpoint": checkpoint,
                "cells": cells,
                "derived": _derived(row, model, method, pattern, reported),
            }
        )
    return {
        "format": FORMAT,
        "table": {"path": str(table_path), "sha256": sha256_file(Path(table_path))},
        "benchmarks": list(benchmarks),
        "git_commit": git_commit(),
        "environment": environments.add(environment()),
        "environments": environments.table,
        "rows": rows,
    }


class _Environments:
    """Package versions and numerics flags are the same for most jobs: each distinct
    one is stored once under `environments` and referred to by its key."""

    def __init__(self):
        self.table: dict[str, dict] = {}

    def add(self, env: Mapping[str, Any]) -> str:
        text = json.dumps(env, sort_keys=True)
        key = "env-" + hashlib.sha256(text.encode()).hexdigest()[:12]
        self.table[key] = json.loads(text)
        return key


def _derived(row: Mapping, model: str, method: str, pattern: str, reported) -> dict:
    derived = {
        name: {"value": _number(row.get(name)), "formula": formula}
        for name, formula in DERIVED.items()
        if name in row
    }
    if "reported" in row:
        match = [
            r
            for r in reported
            if (r["model"], r["method"]) == (model, method)
            and parse_pattern(r["pattern"]) == parse_pattern(pattern)
            and r["benchmark_or_column"] == "retention"
        ]
        derived["reported"] = {
            "value": _number(row["reported"]),
            "source": match[0].get("source") if match else None,
            "reported_values_line": match[0]["line"] if match else None,
        }
    return derived
