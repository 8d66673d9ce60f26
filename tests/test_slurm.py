"""The workflow on a real (throwaway, single-node) SLURM cluster through the project's
own profile, profiles/slurm, and the pinned snakemake-executor-plugin-slurm.

Only the test overrides shared/slurm.md found necessary are added to the profile:
- `--slurm-status-command squeue`: the test cluster has no accounting daemon, so `sacct`
  fails and the plugin would silently lose the job and hang forever;
- `--slurm-init-seconds-before-status-checks 6`: the first status poll after 6 s instead
  of 40 s (the plugin then adds 10 s per poll that finds nothing finished).
Snakemake always runs under a hard timeout, so a hang fails the test instead of CI.

The cluster runs the GPU-free smoke config with the trained tiny model and the mini
world copied in from a local run, as they arrive on a cluster after `dvc pull`: training
stays out of this test (it is the slowest job and tests/test_workflow.py runs it).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.slurm_cluster import SlurmCluster, skip_reason
from tests.test_workflow import SNAKEMAKE, WORKFLOW_FILES, copy_workflow, snakemake


def _skip_reason() -> str | None:
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm missing (pip install -r " + (
            "requirements-slurm.txt)"
        )
    return skip_reason()


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]

REPO = Path(__file__).resolve().parents[1]
CONFIG = "config/smoke.yaml"
TEST_OVERRIDES = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "6",
]
GPU_RULES = {"prune", "evaluate"}
# Inputs a cluster run finds in place after `dvc pull` (seeded from the local run).
PULLED = ["data/world", "data/models"]


def clone_of_local_run(local: Path, dest: Path) -> Path:
    """The local run's workflow (same code, same timestamps, so nothing upstream looks
    stale) and its pulled inputs, with the repository's current profiles."""
    local_names = [n for n in [*WORKFLOW_FILES, *PULLED] if n != "profiles"]
    copy_workflow(dest, root=local, names=local_names)
    return copy_workflow(dest, names=["profiles"])


# Hard limits: a hang (the plugin losing a job) never ends by itself. About 2-3 min is
# typical for the full run on 2 idle cores; the margin is for a loaded machine.
TIMEOUT_FULL_RUN = 1200
TIMEOUT_FAILING_RUN = 300


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_smoke(request, tmp_path_factory) -> Path:
    """A finished local run of the smoke config: tests/test_workflow.py's when it is
    shared through conftest.py, else our own."""
    try:
        return request.getfixturevalue("smoke_run")
    except pytest.FixtureLookupError:
        pass
    workdir = copy_workflow(tmp_path_factory.mktemp("local_smoke"))
    result = snakemake(
        workdir, "--cores", "2", "results/table1.csv", "--configfile", CONFIG
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def run_on_slurm(
    workdir: Path, target: str, timeout: int
) -> tuple[subprocess.CompletedProcess, str]:
    """Snakemake through profiles/slurm; returns the result and the SLURM run ID."""
    argv = [
        *SNAKEMAKE,
        "--workflow-profile",
        "profiles/slurm",
        target,
        "--configfile",
        CONFIG,
        *TEST_OVERRIDES,
    ]
    try:
        result = subprocess.run(
            argv, cwd=workdir, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        (workdir / "snakemake-timeout.log").write_bytes(error.stderr or b"")
        pytest.fail(f"snakemake on SLURM still running after {timeout} s (hang?)")
    log = result.stdout + result.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, log[-3000:]
    return result, run_id.group(1)


def slurm_rule(comment: str) -> str:
    """A job's rule (or group), from the plugin's sbatch comment
    `rule_<rule or group name>_wildcards_...`."""
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def started_jobs(log: str) -> tuple[Counter, Counter, list[Counter]]:
    """What Snakemake started, from its log: single non-local jobs and local jobs per
    rule, and the member rules of each group job."""
    single, local, groups = Counter(), Counter(), []
    for line in log.splitlines():
        if re.search(r"\] Group job \S+ ", line):
            groups.append(Counter())
            continue
        match = re.match(r"^( {4})?(rule|localrule) (\w+):$", line)
        if not match:
            continue
        indent, kind, rule = match.groups()
        if indent:
            groups[-1][rule] += 1
        else:
            (local if kind == "localrule" else single)[rule] += 1
    return single, local, groups


def job_stats(log: str) -> Counter:
    """Snakemake's plan: the 'Job stats' table it prints before running."""
    table = log.split("Job stats:", 1)[1].split("total", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return Counter({rule: int(count) for rule, count in rows})


def test_smoke_run_on_slurm_matches_the_local_run(slurm_cluster, local_smoke, tmp_path):
    workdir = clone_of_local_run(local_smoke, tmp_path)
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    group_names = set(profile.get("groups", {}).values())

    started = time.monotonic()
    result, run_id = run_on_slurm(workdir, "results/table1.csv", TIMEOUT_FULL_RUN)
    elapsed = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    # Every non-local job Snakemake planned and started went through sbatch (alone or
    # in a group job), and only the table ran on this machine.
    single, local, groups = started_jobs(log)
    planned = job_stats(log)
    assert set(planned) >= {"calibration_pool", "prune", "evaluate", "table"}, planned
    assert single + sum(groups, Counter()) + local == planned, (single, groups, local)
    assert local == Counter(table=1), local
    jobs = slurm_cluster.jobs(run_id)
    names = [slurm_rule(job["comment"]) for job in jobs]
    is_group = [any(name.startswith(g) for g in group_names) for name in names]
    assert (
        Counter(n for n, g in zip(names, is_group, strict=True) if not g) == single
    ), names
    assert sum(is_group) == len(groups), (names, groups)
    for job, name, group in zip(jobs, names, is_group, strict=True):
        assert job["state"] == "COMPLETED", job
        if name in GPU_RULES or group:
            # A group of evaluate jobs still asks for one GPU: its members run in turn.
            assert (job["partition"], job["gpus"]) == ("gpu", "gres:gpu:1"), job
        else:
            assert (job["partition"], job["gpus"]) == ("cpu", "N/A"), job
    # The profile keeps one SLURM log per job under logs/slurm/.
    slurm_logs = sorted((workdir / "logs/slurm").rglob("*.log"))
    assert sorted(p.stem for p in slurm_logs) == sorted(j["jobid"] for j in jobs)

    for name in ("results/table1.csv", "results/table1.md"):
        assert (workdir / name).read_bytes() == (local_smoke / name).read_bytes(), name
    print(f"{len(jobs)} SLURM jobs ({Counter(names)}) in {elapsed:.0f} s")


def test_a_failing_job_fails_the_run_cleanly(slurm_cluster, tmp_path):
    workdir = copy_workflow(tmp_path)
    # The first job of the DAG (the mini world) fails on the cluster.
    (workdir / "scripts/build_world.py").write_text(
        'raise SystemExit("deliberate failure for the SLURM test")\n'
    )
    result, run_id = run_on_slurm(workdir, "results/table1.csv", TIMEOUT_FAILING_RUN)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert "Error in rule world" in log, log[-3000:]

    jobs = slurm_cluster.jobs(run_id)
    # retries: 1 in the profile -> submitted twice, failed twice, nothing left queued.
    assert [slurm_rule(j["comment"]) for j in jobs] == ["world", "world"], jobs
    assert {j["state"] for j in jobs} == {"FAILED"}, jobs
    world_logs = list((workdir / "logs/slurm/rule_world").rglob("*.log"))
    assert len(world_logs) == 2
    assert all("deliberate failure" in p.read_text() for p in world_logs)
    assert not (workdir / "data/world").exists()
