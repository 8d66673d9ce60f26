# Helper functions (no rules): config validation, target lists and input functions.

import os
import sys

from snakemake.utils import validate

# Shell rules (dvc) must find the tools of the interpreter running Snakemake (the project
# venv) even when the venv is not activated.
os.environ.update(
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
)

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
BENCHMARKS = list(config["benchmarks"])
POOL = config["calibration"]["pool"]
RUNS = ["dense"] + [f"{m}_s{p}" for m in METHODS for p in PATTERNS]


def one_of(names):
    """Regex matching exactly these names (never matches when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def checkpoints():
    return [f"results/ckpt/{m}/{r}" for m in MODELS for r in RUNS if r != "dense"]


def eval_metrics():
    return [
        f"results/eval/{m}/{r}/{b}.json"
        for m in MODELS
        for r in RUNS
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
    ckpts = [f"results/ckpt/{m}.dvc" for m in MODELS if len(RUNS) > 1]
    evals = [f"results/eval/{m}.dvc" for m in MODELS]
    return data + models + pools + ckpts + evals


def checkpoint_dir(wildcards):
    """The dense model evaluates itself; every other run evaluates its pruned checkpoint."""
    if wildcards.run == "dense":
        return f"data/models/{wildcards.model}"
    return f"results/ckpt/{wildcards.model}/{wildcards.run}"


def benchmark_data(wildcards):
    """The local copy a benchmark is read from: the mini world, or (paper profile) its
    `local_path`, which rules/download.smk fills when it is data/raw/benchmarks/<name>.
    Without a local_path the evaluator reads the hub (or the HF cache) itself."""
    source = config["benchmarks"][wildcards.benchmark]
    if EMBEDDED:
        return ["data/world"] if "local_path" in source else []
    return [source["local_path"]] if source.get("local_path") else []


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
    key = config["methods"][run_method]["method"]
    stem = "atv" if key.startswith("atv") else key.removesuffix("_row")
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
    return [f"results/ckpt/{m}/{a}_s{p}" for m in MODELS for a in atv for p in PATTERNS]


def dvc_inputs(wildcards):
    """What must exist before a directory is tracked: for a model's checkpoint and
    evaluation directories, every file the DAG writes into them."""
    artefact = wildcards.artefact
    for model in MODELS:
        if artefact == f"results/ckpt/{model}":
            return [f"results/ckpt/{model}/{r}" for r in RUNS if r != "dense"]
        if artefact == f"results/eval/{model}":
            return [
                f"results/eval/{model}/{r}/{b}.{ext}"
                for r in RUNS
                for b in BENCHMARKS
                for ext in ("json", "jsonl")
            ]
    return [artefact]
