"""The workflow on a real (throwaway, single-node) SLURM cluster through the project's
own profile, profiles/slurm, and the pinned snakemake-executor-plugin-slurm.

Only the test overrides shared/slurm.md found necessary are added to the profile
(tests/slurm_cluster.py: `--slurm-status-command squeue`, first status poll after 6 s).
Snakemake always runs under a hard timeout, so a hang fails the test instead of CI.

The cluster runs the GPU-free smoke config with the trained tiny model and the mini
world copied in from a local run, as they arrive on a cluster after `dvc pull`: training
stays out of this test (it is the slowest job and tests/test_workflow.py runs it).

Both runs are started by the session (tests/background.py): the failing one when the
session starts, the full one as soon as the local smoke run is done. They spend most of
their time waiting for the plugin's next status poll, so they overlap with other tests;
each test waits for its run and checks it here.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
import yaml
from background import slurm_result
from slurm_cluster import slurm_skip_reason

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        slurm_skip_reason() is not None, reason=str(slurm_skip_reason())
    ),
]

GPU_RULES = {"prune", "evaluate"}


@pytest.fixture(scope="session")
def slurm_cluster(background):
    return background.slurm_cluster()


@pytest.fixture(scope="session")
def slurm_smoke_run(background, smoke_run, slurm_cluster):
    """(workdir, result, run ID, seconds) of the smoke config on SLURM, seeded from
    the local run `smoke_run`."""
    return finished_slurm_run(background, "slurm_smoke_run")


@pytest.fixture(scope="session")
def slurm_failing_run(background, slurm_cluster):
    """(workdir, result, run ID, seconds) of the workflow whose first job fails."""
    return finished_slurm_run(background, "slurm_failing_run")


def finished_slurm_run(background, name: str):
    workdir, run = background.slurm_run(name)
    result = slurm_result(workdir, run)
    log = result.stdout + result.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, log[-3000:]
    return workdir, result, run_id.group(1), run.elapsed


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


def test_smoke_run_on_slurm_matches_the_local_run(
    slurm_cluster, smoke_run, slurm_smoke_run
):
    workdir, result, run_id, elapsed = slurm_smoke_run
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    group_names = set(profile.get("groups", {}).values())
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
        assert (workdir / name).read_bytes() == (smoke_run / name).read_bytes(), name
    print(f"{len(jobs)} SLURM jobs ({Counter(names)}) in {elapsed:.0f} s")


def test_a_failing_job_fails_the_run_cleanly(slurm_cluster, slurm_failing_run):
    # The first job of the DAG (the mini world) fails on the cluster
    # (slurm_cluster.failing_workflow).
    workdir, result, run_id, _elapsed = slurm_failing_run
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
