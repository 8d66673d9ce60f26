"""Faults and bad inputs: each gives one clear message naming the culprit, and nothing
already finished is lost.

- kill -9 of a prune or an evaluate job midway, then the same command again: it
  completes, and the rebuilt outputs equal those of the clean run byte for byte.
- invalid config (beyond tests/test_config.py): fails before any job, culprit named.
- corrupt benchmark image, record missing a field, calibration pool smaller than
  asked, NaN/inf activations, checkpoint hash mismatch: the error names the file,
  doc, layer or key, and the finished outputs beside it are untouched.

The workflow runs reuse the shared smoke run of tests/test_dvc_roundtrip.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import datasets
import psutil
import pytest
import torch
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from test_dvc_roundtrip import ENV, dvc_workflow
from test_workflow import REPO, SNAKEMAKE, copy_workflow

from atvprune.checkpoint import DELTA, CheckpointError, verify_files
from atvprune.config_checks import check_config

MODEL = "tiny-llava"
CONFIG = "config/smoke.yaml"
CKPT = f"results/ckpt/{MODEL}/atv_s0.6"
EVAL = f"results/eval/{MODEL}/atv_s0.6"
SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="module")
def origin(tmp_path_factory, smoke_run) -> Path:
    return dvc_workflow(tmp_path_factory, seed_from=smoke_run)


@pytest.fixture
def workdir(origin, tmp_path) -> Path:
    """A copy of the finished smoke run (mtimes kept, so nothing is stale), without
    git/DVC: these tests change files in it."""
    dest = tmp_path / "work"
    shutil.copytree(
        origin, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", ".dvc")
    )
    return dest


def _job_processes(parent: psutil.Process, script: str) -> list[psutil.Process]:
    found = []
    for child in parent.children(recursive=True):
        try:
            if any(part.endswith(f".{script}") for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def kill_job_midway(workdir: Path, target: str, script: str, log: Path, marker: str):
    """Start snakemake for `target`; once `log` shows `marker`, kill -9 the job process
    running `script`; return snakemake's completed process (it must fail)."""
    process = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "1", target, "--configfile", CONFIG],
        cwd=workdir,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 600
    killed = False
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if log.exists() and marker in log.read_text(errors="replace"):
                for job in _job_processes(parent, script):
                    os.kill(job.pid, signal.SIGKILL)
                    killed = True
                if killed:
                    break
            time.sleep(0.01)
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed, f"the {script} job finished before it could be killed:\n{output}"
    assert process.returncode != 0, output
    return output


def rerun(workdir: Path, target: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", target, "--configfile", CONFIG],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # uses the shared smoke run
def test_kill_9_of_a_prune_job_then_rerun(origin, workdir):
    shutil.rmtree(workdir / CKPT)
    shutil.rmtree(workdir / EVAL)
    target = f"{EVAL}/pope.json"
    log = workdir / f"logs/prune/{MODEL}/atv_s0.6.log"
    log.unlink()
    # "overall sparsity" is logged after the masks are computed, before the save.
    kill_job_midway(workdir, target, "prune.py", log, "overall sparsity")
    if (workdir / CKPT).exists():  # only ever complete: the save renames a full dir
        verify_files(workdir / CKPT)
    rerun(workdir, target)
    for name in (DELTA, "checkpoint.json"):
        assert (workdir / CKPT / name).read_bytes() == (
            origin / CKPT / name
        ).read_bytes()
    assert list((workdir / CKPT).parent.glob(".atv_s0.6.*.tmp")) == []
    pope = f"{EVAL}/pope.jsonl"
    assert (workdir / pope).read_bytes() == (origin / pope).read_bytes()


@pytest.mark.slow  # uses the shared smoke run
def test_kill_9_of_an_evaluate_job_then_rerun(origin, workdir):
    target = f"{EVAL}/pope.json"
    shutil.rmtree(workdir / EVAL)
    log = workdir / f"logs/evaluate/{MODEL}/atv_s0.6.log"
    log.unlink()
    # The progress bar of the first benchmark: generation has started.
    kill_job_midway(workdir, target, "evaluate.py", log, "eval ")
    assert not (workdir / target).exists()
    rerun(workdir, target)
    for predictions in sorted((origin / EVAL).glob("*.jsonl")):
        twin = workdir / EVAL / predictions.name
        assert twin.read_bytes() == predictions.read_bytes(), predictions.name
        mine = json.loads(twin.with_suffix(".json").read_text())
        theirs = json.loads(predictions.with_suffix(".json").read_text())
        assert mine["metrics"] == theirs["metrics"]


# ---------------------------------------------------------------------------------
# Invalid config (tests/test_config.py covers unknown method, benchmark and family,
# out-of-range sparsity, 4:2 and 2:x; these are the remaining shapes of each).
# ---------------------------------------------------------------------------------


def _smoke_config() -> dict:
    return yaml.safe_load((REPO / CONFIG).read_text())


def _bad_configs():
    hub_without_revision = {"family": "llava", "source": "hub", "hf_id": "a/b"}
    return [
        ("sparsities", ["2:4:8"], "2:4:8"),
        ("sparsities", ["0:4"], "0:4"),
        ("sparsities", ["60%"], "60%"),
        ("methods", {"atv": {"method": "atv", "policy": "x"}}, "policy"),
        ("models", {"hub-llava": hub_without_revision}, "hub-llava.revision"),
        ("models", {"m": {"family": "llava", "source": "hub", "dtype": "f8"}}, "f8"),
        ("benchmarks", {"pope_v2": {"local_path": "x"}}, "pope_v2"),
    ]


@pytest.mark.parametrize(("key", "value", "named"), _bad_configs())
def test_invalid_config_names_the_culprit(key, value, named):
    config = _smoke_config()
    config[key] = value
    with pytest.raises((WorkflowError, ValueError, KeyError)) as error:
        validate(config, str(REPO / "config/schema.yaml"))
        check_config(config)
    assert named in str(error.value)


def test_invalid_config_stops_the_workflow_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = _smoke_config()
    config["sparsities"] = ["0.6", "2:4:8"]
    (workdir / "config/bad.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "--cores",
            "1",
            "results/table1.csv",
            "--configfile",
            "config/bad.yaml",
        ],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "sparsities" in result.stderr and "2:4:8" in result.stderr
    assert not (workdir / "data").exists() and not (workdir / "logs").exists()


# ---------------------------------------------------------------------------------
# Bad inputs at run time
# ---------------------------------------------------------------------------------


def _run_script(workdir: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE[:1], str(SCRIPTS / script), *args],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # uses the shared smoke run
def test_corrupt_image_names_the_doc(tiny_llava, tmp_path, origin):
    from atvprune.benchmarks import BENCHMARKS
    from atvprune.evaluate import evaluate, load_docs

    model, processor, adapter = tiny_llava
    source = datasets.load_from_disk(str(origin / "data/world/pope"))
    split = BENCHMARKS["pope"].TASK.split
    docs = source[split].select(range(4)).cast_column("image", datasets.Image(False))
    rows = docs.to_list()
    rows[2]["image"] = {"bytes": b"not an image", "path": None}
    bad_id = rows[2]["question_id"]
    broken = datasets.Dataset.from_list(rows, features=docs.features).cast_column(
        "image", datasets.Image()
    )
    datasets.DatasetDict({split: broken}).save_to_disk(str(tmp_path / "pope"))
    bench = BENCHMARKS["pope"]
    docs = load_docs(bench, {"local_path": str(tmp_path / "pope")})
    with pytest.raises(ValueError, match=f"pope: doc question_id={bad_id!r}"):
        evaluate(model, processor, adapter, bench, docs, 2, "lmms-eval-0.4", False, 2)


@pytest.mark.slow  # uses the shared smoke run
def test_metric_record_missing_a_field_is_named(workdir):
    metric = workdir / EVAL / "gqa.json"
    record = json.loads(metric.read_text())
    del record["predictions_sha256"]
    metric.write_text(json.dumps(record))
    table = workdir / "results/table1.csv"
    before = table.read_bytes()
    result = _table(workdir)
    assert result.returncode != 0
    assert (
        f"{EVAL}/gqa.json: missing required key 'predictions_sha256'" in result.stderr
    )
    assert table.read_bytes() == before


@pytest.mark.slow  # uses the shared smoke run
def test_prune_record_missing_a_field_is_named(workdir):
    stats = workdir / CKPT / "prune_stats.json"
    record = json.loads(stats.read_text())
    del record["mask_sha256"]
    stats.write_text(json.dumps(record))
    provenance = workdir / "results/table1.provenance.json"
    before = provenance.read_bytes()
    result = _table(workdir)
    assert result.returncode != 0
    assert f"{CKPT}/prune_stats.json: missing required field(s) ['mask_sha256']" in (
        result.stderr
    )
    assert provenance.read_bytes() == before


def _table(workdir: Path) -> subprocess.CompletedProcess:
    """scripts/table.py by hand, writing into results/ like the rule does."""
    config = yaml.safe_load((workdir / CONFIG).read_text())
    code = (
        "import sys, yaml; sys.argv = ['table']; "
        f"sys.path.insert(0, {str(SCRIPTS)!r}); import table; "
        f"c = yaml.safe_load(open({CONFIG!r})); "
        "import glob; "
        "table_runs = lambda p: p.split('/')[3] == 'dense' or "
        "p.split('/')[3].rsplit('_s', 1)[0] in c['methods']; "
        "table.main(sorted(filter(table_runs, glob.glob('results/eval/*/*/*.json'))), "
        "sorted(glob.glob('results/ckpt/*/atv*/prune_stats.json')), "
        "list(c['benchmarks']), list(c['methods']), list(c['models']), None, "
        "{'csv': 'results/table1.csv', 'markdown': 'results/table1.md', "
        "'accuracy': 'results/figures/accuracy_vs_sparsity.png', "
        "'atv_layers': 'results/figures/atv_layers.png', "
        "'provenance': 'results/table1.provenance.json'}, None, "
        "c['models'], c['methods'])"
    )
    assert config  # the smoke config the run used
    return subprocess.run(
        [*SNAKEMAKE[:1], "-c", code],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _prune(workdir: Path, model_dir: str, n_samples: int, out: str):
    spec = _smoke_config()["models"][MODEL]
    return _run_script(
        workdir,
        "prune.py",
        model_dir,
        f"data/calib/{MODEL}/sharegpt4v",
        out,
        "--model-spec",
        json.dumps(spec),
        "--method",
        '{"method": "wanda"}',
        "--pattern",
        "0.5",
        "--n-samples",
        str(n_samples),
    )


@pytest.mark.slow  # uses the shared smoke run
def test_calibration_pool_smaller_than_asked_is_named(workdir):
    result = _prune(workdir, f"data/models/{MODEL}", 9, "results/ckpt/x/wanda_s0.5")
    assert result.returncode != 0
    assert (
        f"calibration pool data/calib/{MODEL}/sharegpt4v has 8 samples, 9 were asked"
        in result.stderr
    )
    assert not (workdir / "results/ckpt/x").exists()


@pytest.mark.slow  # uses the shared smoke run
def test_non_finite_activations_abort_the_job_without_an_output(workdir, origin):
    """The engine names the layer (tests/test_engine.py); here the prune job exits
    with that message, writes no checkpoint and leaves the finished ones alone."""
    from atvprune.models import get_adapter

    adapter = get_adapter("llava")
    model, processor = adapter.load(workdir / f"data/models/{MODEL}")
    layer = adapter.decoder_layers(model)[0]
    with torch.no_grad():
        layer.mlp.down_proj.weight[0, :] = float("inf")
    model.save_pretrained(workdir / "data/models/broken")
    processor.save_pretrained(workdir / "data/models/broken")
    result = _prune(workdir, "data/models/broken", 8, f"results/ckpt/{MODEL}/w_s0.5")
    assert result.returncode != 0
    assert "non-finite activations after pruned decoder layer 0" in result.stderr
    assert not (workdir / f"results/ckpt/{MODEL}/w_s0.5").exists()
    for name in (DELTA, "checkpoint.json"):
        assert (workdir / CKPT / name).read_bytes() == (
            origin / CKPT / name
        ).read_bytes()


@pytest.mark.slow  # uses the shared smoke run
def test_checkpoint_hash_mismatch_is_named_and_metrics_kept(workdir):
    delta = workdir / CKPT / DELTA
    data = bytearray(delta.read_bytes())
    data[len(data) // 2] ^= 0x01
    delta.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{CKPT}: {DELTA} has sha256"):
        verify_files(workdir / CKPT)
    metrics = workdir / EVAL / "pope.json"
    before = metrics.read_bytes()
    result = _run_script(
        workdir,
        "evaluate.py",
        CKPT,
        "pope",
        "--local-root",
        "data/world",
        "--out",
        EVAL,
    )
    assert result.returncode != 0
    assert f"checkpoint {CKPT}: {DELTA} has sha256" in result.stderr
    assert metrics.read_bytes() == before
