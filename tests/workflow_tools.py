"""Helpers to run the workflow in a temporary copy of the repository (tests only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = [
    "Snakefile",
    "rules",
    "scripts",
    "config",
    "profiles",
    "envs",
    "atvprune",
    "report",
]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Commits made by the tests (no global git identity needed).
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def copy_workflow(dest: Path, root: Path = REPO, names=tuple(WORKFLOW_FILES)) -> Path:
    """Copy `names` (files or directories, timestamps kept) from `root` into `dest`."""
    for name in names:
        source = root / name
        if source.is_dir():
            shutil.copytree(
                source, dest / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, dest / name)
    return dest


def commit_workflow(workdir: Path) -> Path:
    """Make `workdir` a git repository whose first commit holds its files, as in a
    clone: the jobs then record that commit in their provenance."""
    env = {**os.environ, **GIT_IDENTITY}
    for argv in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "workflow"],
    ):
        subprocess.run(argv, cwd=workdir, env=env, check=True, capture_output=True)
    return workdir


def snakemake(
    workdir: Path, *args: str, timeout: int = 1500
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
