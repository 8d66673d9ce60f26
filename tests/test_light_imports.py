"""Parsing the Snakefile stays light: the config check imports no torch, transformers or
datasets (every Snakemake start, dry runs and each cluster job, runs it), and the
torch-free lists it checks against (atvprune.catalog) agree with the real registries.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from atvprune import catalog, engine, patterns
from atvprune.config_checks import check_config
from atvprune.models import ADAPTERS
from atvprune.pruners import (
    PRUNERS,
    AtvPruner,
    SparseGptPruner,
    TokenPolicy,
    build_pruner,
)
from atvprune.world import tiny_llava

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")

# What rules/common.smk imports and runs when the Snakefile is parsed.
SNAKEFILE_IMPORTS = """
import sys
import yaml
import atvprune.io
from atvprune.config_checks import check_config
for name in sys.argv[1:]:
    with open(name) as handle:
        check_config(yaml.safe_load(handle))
print(" ".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_config_check_imports_no_torch_transformers_or_datasets():
    configs = ["config/config.yaml", "config/paper.yaml", "config/smoke.yaml"]
    out = subprocess.run(
        [sys.executable, "-c", SNAKEFILE_IMPORTS.format(heavy=HEAVY), *configs],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []  # the heavy modules that were imported


def test_model_families_equal_adapter_registry():
    assert catalog.MODEL_FAMILIES == tuple(ADAPTERS)


def test_method_params_equal_pruner_registry_and_schema():
    assert list(catalog.METHOD_PARAMS) == list(PRUNERS)
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    entry = schema["properties"]["methods"]["additionalProperties"]["properties"]
    accepted = set().union(*(p.names for p in catalog.METHOD_PARAMS.values()))
    assert accepted == set(entry) - {"method", "sparsities"}


def test_every_listed_parameter_reaches_the_pruner():
    params = {"alpha": 0.5, "ratio": 0.2, "drift_dtype": "float32"}
    atv = build_pruner({"method": "atv_drift_fixed", **params})
    assert isinstance(atv, AtvPruner)
    assert atv.policy == TokenPolicy(kind="drift_fixed", **params)
    sparsegpt = build_pruner({"method": "sparsegpt", "blocksize": 64, "percdamp": 0.05})
    assert isinstance(sparsegpt, SparseGptPruner)
    assert (sparsegpt.blocksize, sparsegpt.percdamp) == (64, 0.05)


@pytest.mark.parametrize(
    ("spec", "culprit"),
    [
        ({"method": "nope"}, "nope"),
        ({"method": "wanda", "alpha": 1.0}, "alpha"),
        ({"method": "magnitude_row", "per_row": True}, "per_row"),
        ({"method": "tamp", "alpha": 1.0}, "alpha"),
        ({"method": "tamp_das", "max_sparsity": 0.7}, "max_sparsity"),
        ({"method": "atv", "alpha": 1.0, "beta": 2}, "beta"),
        ({"method": "atv_random_fixed", "ratio": 0.1, "k": 3}, "k"),
        ({"method": "sparsegpt", "blocksize": 64, "damp": 0.01}, "damp"),
    ],
)
def test_config_check_and_pruning_job_refuse_the_same_entry(spec, culprit):
    """The config check refuses what build_pruner refuses, with its message."""
    with pytest.raises(KeyError) as refused:
        build_pruner(spec)
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["methods"]["bad"] = spec
    with pytest.raises(ValueError) as checked:
        check_config(config)
    assert str(checked.value) == f"config methods.bad: {refused.value}"
    assert repr(culprit) in str(checked.value)


def test_moved_classes_are_re_exported():
    assert engine.SparsityPattern is patterns.SparsityPattern
    assert tiny_llava.TinyLlavaSpec is catalog.TinyLlavaSpec
    assert "text_layers" in {f.name for f in fields(catalog.TinyLlavaSpec)}
