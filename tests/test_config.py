"""Config schema and semantic checks: a bad experiment definition fails with its key
named.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from atvprune.benchmarks import BENCHMARKS
from atvprune.config_checks import check_config
from atvprune.pruners import PRUNERS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def checked(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    check_config(config)
    return config


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_shipped_configs_are_valid(name):
    checked(load(name))


def test_method_enum_equals_registry():
    schema = yaml.safe_load(SCHEMA.read_text())
    method = schema["properties"]["methods"]["additionalProperties"]["properties"][
        "method"
    ]
    assert sorted(method["enum"]) == sorted(PRUNERS)


def test_benchmark_names_equal_modules():
    schema = yaml.safe_load(SCHEMA.read_text())
    names = schema["properties"]["benchmarks"]["propertyNames"]["enum"]
    assert names == list(BENCHMARKS)


def _mutate(path: list, value):
    config = load("smoke.yaml")
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["methods", "x"], {"method": "nope"}, "nope"),
        (["sparsities"], ["1.0"], "1.0"),
        (["sparsities"], ["0.5", "-0.2"], "-0.2"),
        (["sparsities"], ["4:2"], "4:2"),
        (["sparsities"], ["2:x"], "2:x"),
        (["benchmarks", "imagenet"], {"local_path": "x"}, "imagenet"),
        (["models", "tiny-llava", "family"], "gpt", "gpt"),
        (["methods", "atv"], {"method": "atv", "alpha": 1.0, "beta": 2}, "beta"),
        (["models", "tiny-llava", "architecture", "text_hiden"], 64, "text_hiden"),
    ],
)
def test_bad_config_is_rejected_naming_the_culprit(path, value, named):
    with pytest.raises((WorkflowError, ValueError, KeyError)) as error:
        checked(_mutate(path, value))
    assert named in str(error.value)


def test_env_pins_equal_requirements():
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    for env in sorted((REPO / "envs").glob("*.yaml")):
        text = env.read_text()
        for name, version in re.findall(r"-\s+([A-Za-z0-9_.-]+)==([0-9][^\s]*)", text):
            assert pins.get(name.lower()) == version, f"{env.name}: {name}=={version}"


def test_tamp_das_with_nm_pattern_is_refused_naming_the_run():
    config = load("smoke.yaml")
    config["methods"]["das"] = {"method": "tamp_das"}
    config["sparsities"] = ["0.6", "2:4"]
    with pytest.raises(ValueError, match=r"methods\.das.*2:4"):
        checked(config)
    config["methods"]["das"]["sparsities"] = ["0.6"]
    checked(config)


def test_ablation_policy_with_unknown_parameter_is_named():
    config = load("smoke.yaml")
    config["ablation"] = {
        "pattern": "0.6",
        "policies": {"rand": {"method": "atv_random_fixed", "ratio": 0.1, "k": 3}},
        "alphas": [0, 1],
    }
    with pytest.raises(ValueError, match=r"ablation\.policies\.rand.*'k'"):
        checked(config)
