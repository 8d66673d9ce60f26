"""End-to-end runs started early and in the background (tests only).

The suite's long runs are independent of the unit tests, and two of them mostly wait:
a SLURM run sleeps between status polls (the plugin's interval grows by 10 s per poll
that finds nothing finished) and its jobs are single-threaded. Started at the beginning
of the session, they overlap with the unit tests and with each other instead of adding
their waits to the suite's wall time. Each run is still a separate process in its own
directory, and the test that owns it waits for it and asserts on its result exactly as
if it had started the run itself.

Started here, only when a selected (and not skipped) test needs it:
- `smoke_run`: the smoke config, target `all` (shared by every end-to-end test);
- `smoke_run_again`: a second clean, independent run of the same config (determinism);
- `slurm_failing_run`: the SLURM run whose first job fails (needs only the cluster);
- `slurm_smoke_run`: the smoke config on SLURM, started as soon as `smoke_run` is done
  (it is seeded with that run's world and model, as after `dvc pull`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from workflow_tools import SNAKEMAKE, commit_workflow, copy_workflow

SMOKE_CONFIG = "config/smoke.yaml"
# Hard limits: a hang never ends by itself. About 1-2 min each on 2 idle cores; the
# margin is for a loaded machine and the runs overlapping each other.
TIMEOUT_SMOKE_RUN = 1500
TIMEOUT_SLURM_SMOKE_RUN = 1200
TIMEOUT_SLURM_FAILING_RUN = 300


class BackgroundRun:
    """One command in its own process group, output captured to files (no pipe that
    could fill up while nobody reads it)."""

    def __init__(self, argv: list[str], cwd: Path, timeout: float):
        self.argv = argv
        self.cwd = cwd
        self._stdout = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=self._stdout,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self._result: subprocess.CompletedProcess | None = None
        self.ended: float | None = None
        threading.Thread(target=self._note_end, daemon=True).start()

    def _note_end(self) -> None:
        self.process.wait()
        self.ended = time.monotonic()

    @property
    def elapsed(self) -> float | None:
        """Seconds from start to exit, None while running."""
        return None if self.ended is None else self.ended - self.started

    def result(self) -> subprocess.CompletedProcess:
        """Wait for the command (at most until its deadline) and return its result;
        on a timeout its whole process group is killed and TimeoutExpired raised."""
        if self._result is None:
            try:
                self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise subprocess.TimeoutExpired(
                    self.argv, self.deadline - self.started, self._read(self._stdout)
                ) from None
            if self.ended is None:  # the watcher thread may not have noted it yet
                self.ended = time.monotonic()
            self._result = subprocess.CompletedProcess(
                self.argv,
                self.process.returncode,
                self._read(self._stdout),
                self._read(self._stderr),
            )
        return self._result

    @staticmethod
    def _read(handle) -> str:
        handle.flush()
        handle.seek(0)
        return handle.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


def start_snakemake(workdir: Path, *args: str, timeout: float) -> BackgroundRun:
    return BackgroundRun([*SNAKEMAKE, *args], workdir, timeout)


def wanted_fixtures(items, names) -> set[str]:
    """Which of `names` the selected tests need (directly or through other fixtures)."""
    return {name for name in names if any(name in item.fixturenames for item in items)}


class BackgroundRuns:
    """The session's end-to-end runs: started early when wanted, else on first use."""

    def __init__(self, tmp_path_factory, wanted: set[str], slurm_usable: bool):
        self.factory = tmp_path_factory
        self.wanted = wanted
        self.slurm_usable = slurm_usable
        self.runs: dict[str, tuple[Path, BackgroundRun]] = {}
        self.cluster = None
        # The SLURM smoke run starts the moment the local run is done, whether or not a
        # test is waiting for it yet (the unit tests usually are still running).
        self._lock = threading.RLock()
        self._watcher: threading.Thread | None = None
        self.session_start = time.monotonic()

    # -- starting ------------------------------------------------------------------
    def start_early(self) -> None:
        for name in ("smoke_run", "smoke_run_again"):
            if name in self.wanted:
                self._start_smoke(name)
        if "slurm_failing_run" in self.wanted and self.slurm_usable:
            try:
                self.slurm_run("slurm_failing_run")
            except Exception:  # noqa: BLE001
                pass  # e.g. the cluster did not start: the SLURM test retries, reports
        if "smoke_run" in self.runs and self._wants_slurm_smoke():
            self._watcher = threading.Thread(
                target=self._start_slurm_smoke_when_local_is_done, daemon=True
            )
            self._watcher.start()

    def _wants_slurm_smoke(self) -> bool:
        return "slurm_smoke_run" in self.wanted and self.slurm_usable

    def _start_slurm_smoke_when_local_is_done(self) -> None:
        workdir, run = self.runs["smoke_run"]
        try:
            result = run.result()
        except subprocess.TimeoutExpired:
            return  # the smoke_run fixture reports it
        if result.returncode != 0:
            return
        try:
            with self._lock:
                if "slurm_smoke_run" not in self.runs:
                    self._start_slurm_smoke(workdir)
        except Exception:  # noqa: BLE001
            return  # e.g. the cluster did not start: the SLURM test retries and reports

    def _start_smoke(self, name: str) -> None:
        # A git repository like a clone (tests/test_dvc_roundtrip.py builds its DVC
        # origin on top of this run's commit).
        workdir = commit_workflow(copy_workflow(self.factory.mktemp(name)))
        run = start_snakemake(
            workdir,
            "--cores",
            "2",
            "all",
            "--configfile",
            SMOKE_CONFIG,
            timeout=TIMEOUT_SMOKE_RUN,
        )
        self.runs[name] = (workdir, run)

    def _start_slurm_failing(self) -> None:
        from slurm_cluster import failing_workflow, slurm_argv

        self.slurm_cluster()
        workdir = failing_workflow(self.factory.mktemp("slurm_failing"))
        run = BackgroundRun(
            slurm_argv("results/table1.csv"), workdir, TIMEOUT_SLURM_FAILING_RUN
        )
        self.runs["slurm_failing_run"] = (workdir, run)

    def _start_slurm_smoke(self, local: Path) -> None:
        from slurm_cluster import clone_of_local_run, slurm_argv

        self.slurm_cluster()
        workdir = clone_of_local_run(local, self.factory.mktemp("slurm_smoke"))
        run = BackgroundRun(
            slurm_argv("results/table1.csv"), workdir, TIMEOUT_SLURM_SMOKE_RUN
        )
        self.runs["slurm_smoke_run"] = (workdir, run)

    # -- what the fixtures return --------------------------------------------------
    def finished(self, name: str) -> tuple[Path, subprocess.CompletedProcess]:
        workdir, run = self.runs[name]
        return workdir, run.result()

    def smoke(self, name: str) -> Path:
        """A finished smoke run (`smoke_run` or `smoke_run_again`); fails the test
        with Snakemake's output when the run failed."""
        if name not in self.runs:
            self._start_smoke(name)
        workdir, result = self.finished(name)
        assert result.returncode == 0, result.stderr[-4000:]
        return workdir

    def slurm_cluster(self):
        with self._lock:
            return self._slurm_cluster()

    def _slurm_cluster(self):
        if self.cluster is None:
            from slurm_cluster import SlurmCluster

            cluster = SlurmCluster(self.factory.mktemp("slurm"))
            try:
                cluster.start()
            except BaseException:
                cluster.stop()
                raise
            self.cluster = cluster
        return self.cluster

    def slurm_run(self, name: str) -> tuple[Path, BackgroundRun]:
        """A SLURM run's workdir and process (started now if it was not yet)."""
        if name == "slurm_smoke_run":
            local = self.smoke("smoke_run")
        with self._lock:
            if name not in self.runs:
                if name == "slurm_failing_run":
                    self._start_slurm_failing()
                else:
                    self._start_slurm_smoke(local)
        return self.runs[name]

    # -- teardown ------------------------------------------------------------------
    def stop(self) -> None:
        with self._lock:
            runs = dict(self.runs)
        lines = []
        for name, (_workdir, run) in runs.items():
            running = run.process.poll() is None
            run.kill()
            start = run.started - self.session_start
            took = "killed while running" if running else f"took {run.elapsed:.0f} s"
            lines.append(f"{name}: started at {start:.0f} s, {took}\n")
        # Where the session's time went (basetemp/background_runs.txt).
        (self.factory.getbasetemp() / "background_runs.txt").write_text("".join(lines))
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def slurm_result(workdir: Path, run: BackgroundRun) -> subprocess.CompletedProcess:
    """The SLURM run's result; a run still going at its deadline (a hang: the plugin
    losing a job never ends by itself) fails the test."""
    try:
        return run.result()
    except subprocess.TimeoutExpired as error:
        (workdir / "snakemake-timeout.log").write_text(error.output or "")
        pytest.fail(f"snakemake on SLURM still running after {error.timeout:.0f} s")
