"""DVC round trip and the reviewer path, on the smoke config with DVC tracking on.

One repository (git + DVC, its own local remote beside it) is shared by this file,
tests/test_provenance.py, tests/test_faults.py and tests/test_report_html.py through
:func:`dvc_workflow`. It is the session's smoke run (a git repository, conftest.py)
taken further, as a user would: DVC switched on in a second commit and the workflow run
again, which tracks and pushes every artefact and rebuilds the table with the reported
values.

- `dvc pull` in a fresh clone restores data, calibration pool, checkpoints and
  evaluation outputs byte-identical; so does deleting them and pulling again.
- The reviewer path (clone -> `dvc pull` -> `snakemake --touch` -> rebuild the table)
  runs no training, pruning or evaluation job and gives a byte-identical table.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, copy_workflow
from workflow_tools import GIT_IDENTITY, commit_workflow

pytestmark = pytest.mark.slow

CONFIG = "config/smoke_dvc.yaml"
TARGET = "results/table1.csv"
# DVC-owned artefacts of the smoke config: data, model, pool, checkpoints, evaluations.
TRACKED = ["data", "results/ckpt", "results/eval"]
ENV = {
    **os.environ,
    # dvc from the interpreter's venv, even when the venv is not activated.
    "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
    "DVC_NO_ANALYTICS": "1",
    **GIT_IDENTITY,
}
# A published value for the smoke grid, so the reported/delta join is exercised.
REPORTED_CSV = (
    "model,method,pattern,benchmark_or_column,value,source\n"
    "tiny-llava,atv,0.6,retention,95.0,test fixture (not a paper number)\n"
)
_RUNS: dict[str, Path] = {}


def run(cwd: Path, *args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output when it fails. On a timeout the
    whole process group goes (no orphaned Snakemake jobs keep the CPU busy)."""
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    assert result.returncode == 0, (args, stdout[-3000:], stderr[-3000:])
    return result


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(cwd, *SNAKEMAKE, *args, "--configfile", CONFIG)


def dvc_workflow(tmp_path_factory, seed_from: Path | None = None) -> Path:
    """The repository `origin`, built once per session: a copy of `seed_from` (the
    session's smoke run) with DVC switched on and run again, data and results committed
    (.dvc pointers in git, content in the remote `<tmp>/atvprune-dvc-store`, which is
    where the committed `.dvc/config` points)."""
    if "origin" not in _RUNS:
        _RUNS["origin"] = build_origin(
            tmp_path_factory.mktemp("dvc") / "origin", seed_from
        )
    return _RUNS["origin"]


def build_origin(origin: Path, seed_from: Path | None = None) -> Path:
    """Create, run and commit the repository.

    `seed_from` is a finished smoke run in a git repository (first commit: the
    workflow). Its whole directory is taken over, timestamps and Snakemake's records
    kept: the outputs are the same bytes this config gives anywhere (the determinism
    test checks that), and each evaluation recorded that first commit. Without it the
    workflow is committed and run here from scratch. Then a second commit switches DVC
    on (config/smoke_dvc.yaml, .dvc/) and the run tracks, pushes and rebuilds the table
    (its reported-values parameter changed); a third commits the results."""
    if seed_from is not None:
        shutil.copytree(seed_from, origin, symlinks=True)
    else:
        origin.mkdir(parents=True)
        commit_workflow(copy_workflow(origin))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(REPO / name, origin / name)
    # report/ holds the texts of `snakemake --report` (copy_workflow may not copy it).
    if not (origin / "report").exists():
        shutil.copytree(REPO / "report", origin / "report")
    config = yaml.safe_load((origin / "config/smoke.yaml").read_text())
    config["dvc"] = {"track": True, "push": True}
    config["report"] = {"reported_values": "config/reported_test.csv"}
    (origin / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    (origin / "config/reported_test.csv").write_text(REPORTED_CSV)
    run(origin, "dvc", "init", "-q")
    shutil.copy2(REPO / ".dvc/config", origin / ".dvc/config")
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-q", "-m", "DVC on")
    snakemake(origin, "--cores", "2", "all")
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-q", "-m", "results")
    return origin


@pytest.fixture(scope="module")
def origin(tmp_path_factory, smoke_run) -> Path:
    return dvc_workflow(tmp_path_factory, seed_from=smoke_run)


def tree_digest(root: Path, parts: list[str]) -> dict[str, str]:
    """sha256 of every file under root/part (DVC and Snakemake bookkeeping excluded)."""
    digests = {}
    for part in parts:
        for file in sorted((root / part).rglob("*")):
            if not file.is_file() or file.name in (
                ".gitignore",
                ".snakemake_timestamp",
            ):
                continue
            if file.suffix == ".dvc":
                continue
            rel = file.relative_to(root).as_posix()
            digests[rel] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def clone(origin: Path, dest: Path) -> Path:
    """git clone + dvc pull, the remote set per machine as docs/reviewer.md says (the
    committed relative URL would point beside `dest`, not at the origin's store)."""
    run(origin.parent, "git", "clone", "-q", str(origin), str(dest))
    store = origin.parent / "atvprune-dvc-store"
    run(dest, "dvc", "remote", "modify", "--local", "store", "url", str(store))
    run(dest, "dvc", "pull")
    return dest


def test_remote_is_the_temporary_store(origin):
    store = origin.parent / "atvprune-dvc-store"
    assert store.is_dir() and any(store.rglob("*")), "nothing was pushed"


def test_every_artefact_is_tracked_and_pushed(origin):
    pointers = sorted(
        p.relative_to(origin).as_posix() for p in origin.rglob("*.dvc") if p.is_file()
    )
    assert pointers == [
        "data/calib/tiny-llava/sharegpt4v.dvc",
        "data/models/tiny-llava.dvc",
        "data/world.dvc",
        "results/ckpt/tiny-llava.dvc",
        "results/eval/tiny-llava.dvc",
    ]
    status = run(origin, "dvc", "status", "--cloud", "--json")
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    tracked = run(origin, "git", "ls-files").stdout.split()
    assert "results/table1.csv" in tracked
    assert "results/table1.provenance.json" in tracked
    assert not [
        f
        for f in tracked
        if f.startswith(("results/ckpt/", "results/eval/"))
        and not f.endswith((".dvc", ".gitignore"))
    ]


def test_dvc_pull_restores_everything_byte_identical(origin, tmp_path):
    expected = tree_digest(origin, TRACKED)
    assert any(k.endswith("delta.safetensors") for k in expected)
    assert any(k.endswith("model.safetensors") for k in expected)
    assert any(k.endswith(".jsonl") for k in expected)
    copy = clone(origin, tmp_path / "clone")
    assert tree_digest(copy, TRACKED) == expected
    # Delete data and checkpoints (and the local cache: pull must use the remote).
    for part in ("data", "results/ckpt"):
        shutil.rmtree(copy / part)
    shutil.rmtree(copy / ".dvc/cache")
    run(copy, "git", "checkout", "--", "data", "results/ckpt")  # the .dvc pointers
    run(copy, "dvc", "pull")
    assert tree_digest(copy, TRACKED) == expected


def test_reviewer_path_rebuilds_the_table_without_any_model_job(origin, tmp_path):
    copy = clone(origin, tmp_path / "review")
    committed = (origin / "results/table1.csv").read_bytes()
    snakemake(copy, "--touch", "--cores", "1", "all")
    dry = snakemake(copy, "-n", "all")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    (copy / "results/table1.csv").unlink()  # prove the table is rebuilt, not kept
    rebuilt = snakemake(copy, "--cores", "2", "--forcerun", "table", TARGET)
    output = rebuilt.stdout + rebuilt.stderr
    for rule in ("world", "train_model", "calibration_pool", "prune", "evaluate"):
        assert f"rule {rule}:" not in output, rule
    assert "rule table:" in output or "localrule table:" in output
    # --touch leaves empty logs; only a job that ran writes one (and model jobs, which
    # all have a `benchmark:` file, would have created benchmarks/).
    written = [p for p in (copy / "logs").rglob("*.log") if p.stat().st_size]
    assert [p.relative_to(copy).as_posix() for p in written] == [
        "logs/table/table1.log"
    ]
    assert not (copy / "benchmarks").exists()
    assert (copy / "results/table1.csv").read_bytes() == committed
    # The provenance only differs in the table job's own commit (a later one here).
    mine = json.loads((copy / "results/table1.provenance.json").read_text())
    theirs = json.loads((origin / "results/table1.provenance.json").read_text())
    mine.pop("git_commit"), theirs.pop("git_commit")
    assert mine == theirs
