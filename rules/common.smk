# Helper functions (no rules): config validation, target lists and input functions.

import os
import sys

from snakemake.utils import validate

from atvprune.io import put_interpreter_tools_on_path  # noqa: E402

# Shell rules (dvc) must find the tools of the interpreter running Snakemake (the project
# venv) even when the venv is not activated.
put_interpreter_tools_on_path()

validate(config, "../config/schema.yaml")

from atvprune.config_checks import check_config  # noqa: E402

check_config(config)

EMBEDDED = config["profile"] in ("embedded", "smoke")
# The mini world's jobs are single-threaded CPU jobs; the paper's jobs each own one GPU.
GPU_PER_JOB = 0 if EMBEDDED else 1
JOB_THREADS = 1 if EMBEDDED else 8


def pattern_tag(pattern):
    """Sparsity pattern as it appears in paths: "0.5" stays, "2:4" becomes "2-4"."""
    return pattern.replace(":", "-")


def pattern_from_tag(tag):
    return tag.replace("-", ":")


MODELS = list(config["models"])
TRAINED_MODELS = [m for m in MODELS if config["models"][m]["source"] == "train"]
HUB_MODELS = [m for m in MODELS if config["models"][m]["source"] == "hub"]
METHODS = list(config["methods"])
PATTERNS = [pattern_tag(p) for p in config["sparsities"]]


def method_patterns(method):
    """Path tags of a table method's patterns (its own `sparsities`, else the global)."""
    own = config["methods"][method].get("sparsities", config["sparsities"])
    return [pattern_tag(p) for p in own]


def ablation_rows():
    """Rows of results/table_ablation.csv: (row kind, row label, run-method name, spec).

    A row whose spec equals a table method's reuses that method's run (Wanda = "all
    tokens", ATV alpha 1 = the adaptive row), so no pruning job is run twice."""
    ablation = config.get("ablation")
    if not ablation:
        return []
    wanted = [
        ("policy", name, spec) for name, spec in ablation["policies"].items()
    ] + [
        ("alpha", f"{alpha:g}", {"method": "atv", "alpha": float(alpha)})
        for alpha in ablation["alphas"]
    ]
    table_specs = {
        m: {k: v for k, v in s.items() if k != "sparsities"}
        for m, s in config["methods"].items()
    }
    rows = []
    for kind, label, spec in wanted:
        same = [m for m, s in table_specs.items() if _same_spec(s, spec)]
        if same:
            method = same[0]
        elif kind == "policy":
            method = f"abl_{label}"
        else:
            method = f"abl_alpha_{label.replace('.', 'p')}"
        rows.append((kind, label, method, spec))
    return rows


def _same_spec(a, b):
    defaults = {"alpha": 1.0} if a.get("method") == "atv" else {}
    return {**defaults, **a} == {**defaults, **b}


ABLATION = ablation_rows()
ABLATION_PATTERN = pattern_tag(config["ablation"]["pattern"]) if ABLATION else None
# Every pruning method the DAG knows: the table's, then the ablation-only ones.
METHOD_SPECS = {
    **{m: dict(s) for m, s in config["methods"].items()},
    **{
        method: {**spec, "sparsities": [config["ablation"]["pattern"]]}
        for _, _, method, spec in ABLATION
        if method not in config["methods"]
    },
}


def method_params(method):
    """A method entry as build_pruner takes it (without the DAG-only `sparsities`)."""
    return {k: v for k, v in METHOD_SPECS[method].items() if k != "sparsities"}
BENCHMARKS = list(config["benchmarks"])
POOL = config["calibration"]["pool"]
# The table's runs; the ablation adds its own (ALL_RUNS is what the DAG prunes).
RUNS = ["dense"] + [f"{m}_s{p}" for m in METHODS for p in method_patterns(m)]
ABLATION_RUNS = [f"{method}_s{ABLATION_PATTERN}" for _, _, method, _ in ABLATION]
ALL_RUNS = RUNS + [r for r in dict.fromkeys(ABLATION_RUNS) if r not in RUNS]


def one_of(names):
    """Regex matching exactly these names (never matches when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def checkpoints():
    return [f"results/ckpt/{m}/{r}" for m in MODELS for r in ALL_RUNS if r != "dense"]


def eval_metrics(runs=None):
    return [
        f"results/eval/{m}/{r}/{b}.json"
        for m in MODELS
        for r in (RUNS if runs is None else runs)
        for b in BENCHMARKS
    ]


def dvc_tracked():
    """The .dvc files the DAG writes; the table waits for them when dvc.track is on.

    One DVC artefact per stage and model (all checkpoints of a model, all its evaluation
    outputs): each `dvc add` + `dvc push` costs seconds of CPU, and per-run granularity
    made tracking a third of the embedded default's run time."""
    if not config.get("dvc", {}).get("track", False):
        return []
    data = ["data/world.dvc"] if EMBEDDED else [f"{d}.dvc" for d in downloaded_data()]
    models = [f"data/models/{m}.dvc" for m in MODELS]
    pools = [f"data/calib/{m}/{POOL}.dvc" for m in MODELS]
    ckpts = [f"results/ckpt/{m}.dvc" for m in MODELS if len(ALL_RUNS) > 1]
    evals = [f"results/eval/{m}.dvc" for m in MODELS]
    return data + models + pools + ckpts + evals


def checkpoint_dir(wildcards):
    """The dense model evaluates itself; every other run evaluates its pruned checkpoint."""
    if wildcards.run == "dense":
        return f"data/models/{wildcards.model}"
    return f"results/ckpt/{wildcards.model}/{wildcards.run}"


def benchmark_data(wildcards):
    """The local copies the benchmarks are read from: the mini world, or (paper
    profile) each `local_path`, which rules/download.smk fills when it is
    data/raw/benchmarks/<name>. Without a local_path the evaluator reads the hub (or the
    HF cache) itself."""
    paths = []
    for name in BENCHMARKS:
        source = config["benchmarks"][name]
        if EMBEDDED:
            paths += ["data/world"] if "local_path" in source else []
        elif source.get("local_path"):
            paths.append(source["local_path"])
    return sorted(set(paths))


def calibration_source(wildcards):
    return ["data/world"] if EMBEDDED else [f"data/raw/{POOL}"]


def calibration_seed(model):
    """The pool's draw seed: `models.<model>.calibration_seed` (the paper uses 42 in
    the TAMP codebase for LLaVA-NeXT and 21 for Qwen), else `calibration.seed`."""
    return config["models"][model].get(
        "calibration_seed", config["calibration"]["seed"]
    )


def calibration_spec(model):
    """The `calibration` section with the model's own draw seed."""
    return {**config["calibration"], "seed": calibration_seed(model)}


def calibration_seeds():
    """Every draw seed some model uses (the calibration download keeps their images)."""
    return sorted({calibration_seed(m) for m in MODELS})


def downloaded_data():
    """Paper profile: the hub downloads the DAG writes under data/raw/."""
    if EMBEDDED:
        return []
    benchmarks = [
        source["local_path"]
        for source in config["benchmarks"].values()
        if source.get("local_path", "").startswith("data/raw/benchmarks/")
    ]
    return [f"data/raw/{POOL}"] + benchmarks


def method_module(run_method):
    """The module holding a method's tensor math (an input of its prune jobs)."""
    key = METHOD_SPECS[run_method]["method"]
    if key.startswith("atv"):
        stem = "atv"
    elif key.startswith("tamp"):
        stem = "tamp"
    else:
        stem = key.removesuffix("_row")
    return f"atvprune/methods/{stem}.py"


def run_spec(run):
    """What an evaluated run is: dense, or (method entry, pattern)."""
    if run == "dense":
        return {"method": "dense", "pattern": "dense"}
    method, _, tag = run.rpartition("_s")
    return {"method": method, "pattern": pattern_from_tag(tag)}


def atv_checkpoints():
    """Checkpoints of ATV runs (their prune_stats.json feed the per-layer figure)."""
    atv = [m for m, spec in config["methods"].items() if spec["method"] == "atv"]
    return [
        f"results/ckpt/{m}/{a}_s{p}"
        for m in MODELS
        for a in atv
        for p in method_patterns(a)
    ]


def dvc_inputs(wildcards):
    """What must exist before a directory is tracked: for a model's checkpoint and
    evaluation directories, every file the DAG writes into them."""
    artefact = wildcards.artefact
    for model in MODELS:
        if artefact == f"results/ckpt/{model}":
            return [f"results/ckpt/{model}/{r}" for r in ALL_RUNS if r != "dense"]
        if artefact == f"results/eval/{model}":
            return [
                f"results/eval/{model}/{r}/{b}.{ext}"
                for r in ALL_RUNS
                for b in BENCHMARKS
                for ext in ("json", "jsonl")
            ]
    return [artefact]
