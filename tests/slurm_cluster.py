"""A throwaway single-node SLURM cluster (munged + slurmctld + slurmd) for tests.

Everything lives under one temporary root; the daemons are child processes of the
test run, stopped by pid. Two partitions share the node: `cpu` (default) and `gpu`,
with two fake GPUs (GRES backed by /dev/null-like character devices). The node
advertises more CPUs and memory than the machine has (`SlurmdParameters=
config_overrides`) so the real profile's requests are accepted; the two fake GPUs (one
per prune/evaluate job) are what keep concurrency low.

The SLURM executor plugin strips every SLURM_* variable inside a job before its nested
`srun`, so SLURM_CONF cannot point at the temporary config: /etc/slurm/slurm.conf is
made a symlink to it for the cluster's lifetime. Hence at most one test cluster per
machine, and none when a real /etc/slurm/slurm.conf exists (see shared/slurm.md).

Also here: how the tests run the workflow on it (`slurm_argv`) and the two workdirs
they run (`clone_of_local_run`, `failing_workflow`), shared by tests/test_slurm.py and
the session's background runs (tests/background.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from workflow_tools import REPO, SNAKEMAKE, WORKFLOW_FILES, copy_workflow

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
BINARIES = (
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sinfo",
    "scancel",
    "srun",
)
# What the node advertises: enough for the paper profile (8 threads, 64 GB, 1 GPU).
NODE_CPUS = 16
NODE_MEMORY_MB = 131072
FAKE_GPUS = 2
# squeue forgets finished jobs after MinJobAge. The plugin needs >= 3 poll intervals;
# the tests read a run's jobs at any later point of the session (the runs start in the
# background when it begins), so the records stay for two hours.
MIN_JOB_AGE = 7200
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def skip_reason() -> str | None:
    """Why no test cluster can run here, or None when it can."""
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (daemons, /etc/slurm symlink, mknod)"
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"SLURM/munge binaries missing: {', '.join(missing)} "
            "(apt-get install slurmctld slurmd munge slurm-client)"
        )
    if SYSTEM_CONF.is_symlink():
        if not stale_link():
            target = SYSTEM_CONF.resolve()
            return f"{SYSTEM_CONF} links to a running test cluster ({target})"
    elif SYSTEM_CONF.exists():
        return f"a real SLURM configuration exists at {SYSTEM_CONF}; not touching it"
    return None


def slurm_skip_reason() -> str | None:
    """Why the SLURM tests cannot run here (no plugin or no test cluster), or None."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm missing (pip install -r " + (
            "requirements-slurm.txt)"
        )
    return skip_reason()


def stale_link() -> bool:
    """True when /etc/slurm/slurm.conf is a symlink left by a test cluster that is gone
    (killed test run): its target is missing or its slurmctld is not running."""
    if not SYSTEM_CONF.is_symlink():
        return False
    target = SYSTEM_CONF.resolve()
    pid_file = target.parent / "run" / "slurmctld.pid"
    if not target.exists() or not pid_file.exists():
        return True
    try:
        return not Path(f"/proc/{int(pid_file.read_text().split()[0])}").exists()
    except (ValueError, IndexError):
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    """Start with `start()`, always call `stop()` (idempotent)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.linked = False

    # -- configuration -------------------------------------------------------------
    def write_config(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "log", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for index in range(FAKE_GPUS):
            device = root / f"fakegpu{index}"
            if not device.exists():
                # Character devices: a regular file makes slurmd mark the node INVAL.
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        (root / "gres.conf").write_text(
            f"Name=gpu File={root}/fakegpu[0-{FAKE_GPUS - 1}]\n"
        )
        host = socket.gethostname().split(".")[0]
        lines = [
            "ClusterName=atvtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/run/slurmctld.pid",
            f"SlurmdPidFile={root}/run/slurmd.pid",
            f"SlurmctldLogFile={root}/log/slurmctld.log",
            f"SlurmdLogFile={root}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            f"MinJobAge={MIN_JOB_AGE}",
            "GresTypes=gpu",
            "SlurmdParameters=config_overrides",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} "
            f"RealMemory={NODE_MEMORY_MB} Gres=gpu:{FAKE_GPUS} State=UNKNOWN",
            f"PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    # -- life cycle ----------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        self.processes.append((name, process))

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode} while waiting for "
                        f"{what}; see {self.root / 'log'}"
                    )
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}; see {self.root / 'log'}")

    def start(self) -> SlurmCluster:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        self.write_config()
        munge = self.root / "munge"
        key = munge / "munge.key"
        subprocess.run(
            ["mungekey", "--create", "--force", "--keyfile", str(key)],
            check=True,
            capture_output=True,
        )
        key.chmod(0o600)
        # --force: pytest temp dirs are 0700, which munged otherwise refuses.
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={munge / 'munged.log'}",
            ],
        )
        self._wait("the munge socket", self.munge_socket.exists)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if stale_link():
            SYSTEM_CONF.unlink()
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked = True
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait("idle nodes in sinfo", self.idle)
        return self

    def idle(self) -> bool:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True
        )
        states = result.stdout.split()
        return result.returncode == 0 and bool(states) and set(states) == {"idle"}

    def stop(self) -> None:
        if any(p.poll() is None for name, p in self.processes if name == "slurmctld"):
            subprocess.run(
                ["scancel", "--full", "--user", "root"],
                capture_output=True,
                timeout=STOP_TIMEOUT,
            )
            self._wait_for_no_running_jobs()
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        self._kill_stray_step_daemons()
        if self.linked and SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
        self.linked = False

    def _wait_for_no_running_jobs(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            result = subprocess.run(
                ["squeue", "-h", "--states=RUNNING,COMPLETING,PENDING", "-o", "%i"],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0 or not result.stdout.strip():
                return
            time.sleep(0.5)

    def _kill_stray_step_daemons(self) -> None:
        """slurmstepd detaches from slurmd: one of a job still running at shutdown
        would outlive the cluster. Ours carry SLURM_CONF=<our slurm.conf>; kill those,
        by pid."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if not (proc / "cmdline").read_bytes().startswith(b"slurmstepd"):
                    continue
                if marker not in (proc / "environ").read_bytes().split(b"\0"):
                    continue
                os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue

    # -- queries -------------------------------------------------------------------
    def jobs(self, name: str) -> list[dict]:
        """Every job (any state) whose job name is `name`: id, state, partition, the
        GPUs it asked for (`gres:gpu:1` or N/A), its allocation and its comment (the
        plugin writes the rule and wildcards there)."""
        fields = ["jobid", "state", "partition", "gpus", "alloc", "comment"]
        columns = "JobID,State,Partition,tres-per-job,tres-alloc,Comment"
        result = subprocess.run(
            [
                "squeue",
                "--states=all",
                "--noheader",
                f"--name={name}",
                "-O",
                ",".join(f"{c}:200|" for c in columns.split(",")),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = []
        for line in result.stdout.splitlines():
            if line.strip():
                values = [v.strip() for v in line.split("|", len(fields) - 1)]
                values[-1] = values[-1].rstrip("|").strip()
                rows.append(dict(zip(fields, values, strict=True)))
        return rows


# -- the workflow on the test cluster ---------------------------------------------
CONFIG = "config/smoke.yaml"
# Only the test overrides shared/slurm.md found necessary are added to the profile:
# - `--slurm-status-command squeue`: the test cluster has no accounting daemon, so
#   `sacct` fails and the plugin would silently lose the job and hang forever;
# - `--slurm-init-seconds-before-status-checks 6`: the first status poll after 6 s
#   instead of 40 s (the plugin then adds 10 s per poll that finds nothing finished).
TEST_OVERRIDES = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "6",
]
# Inputs a cluster run finds in place after `dvc pull` (seeded from the local run).
PULLED = ["data/world", "data/models"]


def slurm_argv(target: str) -> list[str]:
    """Snakemake through the project's profiles/slurm, plus the test overrides."""
    return [
        *SNAKEMAKE,
        "--workflow-profile",
        "profiles/slurm",
        target,
        "--configfile",
        CONFIG,
        *TEST_OVERRIDES,
    ]


def clone_of_local_run(local: Path, dest: Path) -> Path:
    """The local run's workflow (same code, same timestamps, so nothing upstream looks
    stale) and its pulled inputs, with the repository's current profiles."""
    local_names = [n for n in [*WORKFLOW_FILES, *PULLED] if n != "profiles"]
    copy_workflow(dest, root=local, names=local_names)
    return copy_workflow(dest, names=["profiles"])


def failing_workflow(dest: Path) -> Path:
    """The repository's workflow whose first job (the mini world) fails."""
    copy_workflow(dest, root=REPO)
    (dest / "scripts/build_world.py").write_text(
        'raise SystemExit("deliberate failure for the SLURM test")\n'
    )
    return dest
