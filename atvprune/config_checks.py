"""Semantic checks of a config beyond its JSON schema.

They run when the Snakefile is parsed, so a bad experiment definition fails before any
job starts, with the offending key named. Every Snakemake start (dry runs, each cluster
job) runs them, so this module imports no torch, transformers or datasets: the names
and parameters it checks against come from `atvprune.catalog` (tests/
test_light_imports.py keeps it that way)."""

from __future__ import annotations

from dataclasses import fields

from atvprune.benchmarks import BENCHMARKS
from atvprune.catalog import MODEL_FAMILIES, TinyLlavaSpec, method_params
from atvprune.patterns import SparsityPattern


def check_config(config: dict) -> None:
    for name, spec in config["models"].items():
        if spec["family"] not in MODEL_FAMILIES:
            raise ValueError(
                f"config models.{name}.family: unknown family {spec['family']!r}"
            )
        if spec["source"] == "train":
            for key in ("architecture", "train", "stages"):
                if key not in spec:
                    raise ValueError(
                        f"config models.{name}.{key} is required for source 'train'"
                    )
            _check_architecture(name, spec["architecture"])
            if "world" not in config:
                raise ValueError(
                    f"config models.{name}: source 'train' needs a `world` section"
                )
        else:
            for key in ("hf_id", "revision"):
                if key not in spec:
                    raise ValueError(
                        f"config models.{name}.{key} is required for source 'hub'"
                    )
    if config["profile"] == "paper":
        _check_paper(config)
    _check_patterns("sparsities", config["sparsities"])
    for run, spec in config["methods"].items():
        _check_method(f"methods.{run}", spec, config["sparsities"])
    ablation = config.get("ablation")
    if ablation:
        _check_patterns("ablation.pattern", [ablation["pattern"]])
        for row, spec in ablation["policies"].items():
            _check_method(f"ablation.policies.{row}", spec, [ablation["pattern"]])
    for name in config["benchmarks"]:
        if name not in BENCHMARKS:
            raise ValueError(f"config benchmarks.{name}: unknown benchmark")


def _check_patterns(key: str, patterns) -> None:
    for pattern in patterns:
        try:
            SparsityPattern.parse(pattern)
        except ValueError as error:
            raise ValueError(f"config {key}: {error}") from None


def _check_method(key: str, spec: dict, default_patterns) -> None:
    params = {k: v for k, v in spec.items() if k != "sparsities"}
    try:
        method_params(params)  # the check pruners.build_pruner runs
    except KeyError as error:
        raise ValueError(f"config {key}: {error}") from None
    patterns = spec.get("sparsities", default_patterns)
    _check_patterns(f"{key}.sparsities", patterns)
    if spec["method"] == "tamp_das":
        nm = [p for p in patterns if SparsityPattern.parse(p).prune_n]
        if nm:
            raise ValueError(
                f"config {key}: 'tamp_das' allocates unstructured sparsity per Linear; "
                f"N:M pattern(s) {nm} cannot be used (give it `sparsities` without N:M)"
            )


def _check_architecture(name: str, architecture: dict) -> None:
    known = {f.name for f in fields(TinyLlavaSpec)}
    unknown = sorted(set(architecture) - known)
    if unknown:
        raise ValueError(
            f"config models.{name}.architecture: unknown key(s) {unknown}; "
            f"known: {sorted(known)}"
        )


def _check_paper(config: dict) -> None:
    """The paper profile fetches its inputs: every one needs a hub id or a local copy.

    Revisions may still be placeholders here (a dry run needs none); the download jobs
    refuse to run until they are commit hashes (atvprune.hub.require_revision)."""
    if "source" not in config["calibration"]:
        raise ValueError(
            "config calibration.source is required for profile 'paper' (the hub "
            "dataset the calibration conversations are drawn from)"
        )
    for name, spec in config["models"].items():
        if spec["source"] != "hub":
            raise ValueError(
                f"config models.{name}.source must be 'hub' for profile 'paper'"
            )
    for name, source in config["benchmarks"].items():
        if not source.get("local_path") and "revision" not in source:
            raise ValueError(
                f"config benchmarks.{name}: profile 'paper' needs a pinned `revision` "
                f"or a `local_path`"
            )
