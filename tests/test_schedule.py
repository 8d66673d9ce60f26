"""New models on a schedule: adding a model to the config plans only that model's jobs.

No model is trained: the smoke config's outputs are stood in by placeholders and
`snakemake --touch --forceall` records them as a finished run (timestamps and the
provenance metadata Snakemake uses to detect changed params/inputs), which is what a
finished run, or a fresh clone after `dvc pull` + `--touch`, looks like to
`snakemake -n`.
Then a second model entry is added and the dry run must plan exactly the new model's
jobs, plus the table that gathers every model.

Measured on Snakemake 9.27: without that metadata (placeholders, or outputs copied
without .snakemake/), the dry run plans nothing at all for the new model, because the
existing table is newer than every input that exists.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from tests.test_workflow import copy_workflow, snakemake

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
# Rules whose jobs gather every model: they must rerun when a model is added.
GATHER_RULES = {"table"}
# Rules shared by all models (the mini world is one dataset for every model).
SHARED_RULES = {"world"}


def planned_jobs(log: str) -> list[dict]:
    """Jobs listed by `snakemake -n`: rule, wildcards and outputs of each."""
    jobs = []
    for line in log.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            jobs.append({"rule": header.group(1), "wildcards": {}, "output": []})
        elif jobs and line.startswith("    output: "):
            jobs[-1]["output"] = line.removeprefix("    output: ").split(", ")
        elif jobs and line.startswith("    wildcards: "):
            pairs = line.removeprefix("    wildcards: ").split(", ")
            jobs[-1]["wildcards"] = dict(p.split("=", 1) for p in pairs)
    return jobs


def dry_run(workdir: Path, configfile: str) -> list[dict]:
    result = snakemake(
        workdir, "-n", "results/table1.csv", "--configfile", configfile, timeout=300
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return planned_jobs(log)


# Outputs with these suffixes are files; the others (model, pool, checkpoint, world)
# are directory() outputs.
FILE_SUFFIXES = {".json", ".jsonl", ".csv", ".md", ".png"}


def stand_in_outputs(workdir: Path, jobs: list[dict], configfile: str) -> None:
    """Create every planned output as a placeholder; record them as a finished run."""
    for out in (workdir / o for job in jobs for o in job["output"]):
        if out.suffix in FILE_SUFFIXES:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("placeholder\n")
        else:
            out.mkdir(parents=True, exist_ok=True)
    result = snakemake(
        workdir,
        "--touch",
        "--forceall",
        "--cores",
        "1",
        "results/table1.csv",
        "--configfile",
        configfile,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_adding_a_model_plans_only_its_jobs(tmp_path):
    workdir = copy_workflow(tmp_path)
    base_jobs = dry_run(workdir, "config/smoke.yaml")
    assert {job["rule"] for job in base_jobs} >= {"prune", "evaluate", "table"}
    stand_in_outputs(workdir, base_jobs, "config/smoke.yaml")
    assert dry_run(workdir, "config/smoke.yaml") == [], "finished run still plans jobs"

    config = yaml.safe_load((workdir / "config/smoke.yaml").read_text())
    (old_model,) = config["models"]
    new_model = f"{old_model}-seed1"
    spec = copy.deepcopy(config["models"][old_model])
    spec["train"]["seed"] = 1
    config["models"][new_model] = spec
    # sort_keys=False: a reordered dict param would itself trigger reruns.
    two_models = yaml.safe_dump(config, sort_keys=False)
    (workdir / "config/two_models.yaml").write_text(two_models)

    jobs = dry_run(workdir, "config/two_models.yaml")
    per_model = [j for j in jobs if j["rule"] not in GATHER_RULES]
    assert {j["wildcards"].get("model") for j in per_model} == {new_model}, per_model
    assert not [j for j in jobs if j["rule"] in SHARED_RULES]

    # Exactly one new model's worth of jobs: the same rule counts as the base run had,
    # without the shared world.
    def counts(job_list):
        rules = [j["rule"] for j in job_list if j["rule"] not in SHARED_RULES]
        return {rule: rules.count(rule) for rule in rules}

    assert counts(jobs) == counts(base_jobs)
    assert [j["rule"] for j in jobs if j["rule"] in GATHER_RULES] == ["table"]
