"""The paper profile without GPU or hub: config validity, the full job grid in a dry
run, downloads that fail with a helpful message offline, local-copy fallbacks, and the
calibration draw reproducing the official code's rows."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate
from test_workflow import copy_workflow, snakemake

from atvprune import hub
from atvprune.calibration import select_indices
from atvprune.config_checks import check_config
from atvprune.models import ADAPTERS

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
SCHEMA = REPO / "config" / "schema.yaml"
OFFLINE = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def paper() -> dict:
    return yaml.safe_load(PAPER.read_text())


def test_paper_config_is_valid_and_complete():
    config = paper()
    validate(config, str(SCHEMA))
    check_config(config)
    assert config["profile"] == "paper"
    assert sorted(config["models"]) == [
        "Qwen2-VL-7B-Instruct",
        "Qwen2.5-VL-7B-Instruct",
        "llama3-llava-next-8b",
    ]
    assert config["calibration"]["n_samples"] == 128
    seeds = {m: s["calibration_seed"] for m, s in config["models"].items()}
    assert seeds == {
        "llama3-llava-next-8b": 42,
        "Qwen2-VL-7B-Instruct": 21,
        "Qwen2.5-VL-7B-Instruct": 21,
    }
    assert list(config["methods"]) == ["magnitude", "wanda", "sparsegpt", "tamp", "atv"]
    assert config["sparsities"] == ["0.5", "0.6", "2:4", "4:8"]
    assert len(config["benchmarks"]) == 9
    for name, source in config["benchmarks"].items():
        assert source["dataset"].startswith("lmms-lab/"), name
        assert source["local_path"] == f"data/raw/benchmarks/{name}"
    assert (REPO / config["report"]["reported_values"]).exists()


def test_family_enum_equals_adapter_registry():
    schema = yaml.safe_load(SCHEMA.read_text())
    models = schema["properties"]["models"]["additionalProperties"]
    assert sorted(models["properties"]["family"]["enum"]) == sorted(ADAPTERS)


def test_paper_profile_rejects_missing_calibration_source():
    config = paper()
    del config["calibration"]["source"]
    with pytest.raises(ValueError, match="calibration.source"):
        check_config(config)


def test_reported_values_only_name_runs_of_the_grid():
    from atvprune.report import load_reported_csv

    config = paper()
    values = load_reported_csv(REPO / config["report"]["reported_values"])
    assert len([v for v in values if v.column == "retention"]) == 20
    for value in values:
        assert value.model in config["models"]
        assert value.method == "dense" or value.method in config["methods"]
        assert value.pattern == "dense" or value.pattern in config["sparsities"]
    atv = {(v.model, v.pattern): v.value for v in values if v.method == "atv"}
    assert atv[("llama3-llava-next-8b", "0.5")] == 94.00
    assert atv[("Qwen2.5-VL-7B-Instruct", "0.6")] == 86.44


# ---------------------------------------------------------------------------------
# The workflow (dry run and offline downloads) in a temporary copy of the repository
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("paper"))


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="snakemake-executor-plugin-slurm missing (requirements-slurm.txt)",
)
def test_slurm_workflow_profile_plans_the_paper_grid(workdir):
    """The cluster command of docs/slurm.md, dry run: a workflow profile, so the local
    default profile's one-GPU cap does not throttle the cluster."""
    result = snakemake(
        workdir,
        "--workflow-profile",
        "profiles/slurm",
        "-n",
        "results/table1.csv",
        "--configfile",
        "config/paper.yaml",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = Counter(
        b["rule"] for b in _job_blocks(result.stdout + "\n" + result.stderr)
    )
    assert counts["prune"] == 60 and counts["evaluate"] == 63


def _job_blocks(text: str) -> list[dict]:
    blocks = []
    for chunk in re.split(r"\n\s*\n", text):
        rule = re.search(r"^(?:local)?rule (\w+):", chunk, re.M)
        if rule:
            resources = re.search(r"resources: (.*)", chunk)
            blocks.append(
                {
                    "rule": rule.group(1),
                    "resources": resources.group(1) if resources else "",
                }
            )
    return blocks


def test_dry_run_lists_the_full_grid_with_gpus_on_prune_and_evaluate(workdir):
    config = paper()
    result = snakemake(
        workdir, "-n", "results/table1.csv", "--configfile", "config/paper.yaml"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = _job_blocks(result.stdout + "\n" + result.stderr)
    counts = Counter(b["rule"] for b in blocks)
    n_models = len(config["models"])
    n_runs = 1 + len(config["methods"]) * len(config["sparsities"])
    n_bench = len(config["benchmarks"])
    assert counts["download_model"] == n_models
    assert counts["download_calibration"] == 1
    assert counts["download_benchmark"] == n_bench
    assert counts["calibration_pool"] == n_models
    assert counts["prune"] == n_models * (n_runs - 1) == 60
    # One evaluation job per checkpoint runs every benchmark (one model load).
    assert counts["evaluate"] == n_models * n_runs == 63
    # models, pools, checkpoints and evaluations per model; the calibration source and
    # the nine benchmark downloads.
    assert counts["dvc_track"] == 4 * n_models + 1 + n_bench
    assert counts["table"] == 1
    for block in blocks:
        gpu = re.search(r"\bgpu=(\d+)", block["resources"])
        if block["rule"] in ("prune", "evaluate"):
            assert gpu and gpu.group(1) == "1", block
        else:
            assert not gpu or gpu.group(1) == "0", block


def test_offline_model_download_fails_naming_model_and_fallbacks(workdir, tmp_path):
    env = {**OFFLINE, "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "data/models/Qwen2-VL-7B-Instruct",
            "--configfile",
            "config/paper.yaml",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    log = (workdir / "logs/download_model/Qwen2-VL-7B-Instruct.log").read_text()
    for text in (log, result.stderr):
        assert "model 'Qwen2-VL-7B-Instruct'" in text
        assert "Qwen/Qwen2-VL-7B-Instruct" in text
        assert "models.Qwen2-VL-7B-Instruct.local_path" in text
        assert "HF_HUB_OFFLINE" in text
    assert not (workdir / "data/models/Qwen2-VL-7B-Instruct").exists()


def _run_script(script: str, *args: str, cwd: Path, env: dict):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_placeholder_revision_is_refused_before_any_download(tmp_path):
    spec = paper()["models"]["llama3-llava-next-8b"]
    result = _run_script(
        "download_model.py",
        "llama3-llava-next-8b",
        str(tmp_path / "out"),
        "--spec",
        json.dumps(spec),
        cwd=tmp_path,
        env=OFFLINE,
    )
    assert result.returncode != 0
    assert "models.llama3-llava-next-8b.revision = 'UNPINNED'" in result.stderr
    assert "python -m atvprune.hub pins" in result.stderr


def test_offline_benchmark_download_fails_naming_dataset(tmp_path):
    source = {**paper()["benchmarks"]["pope"], "revision": "0" * 40}
    env = {**OFFLINE, "HF_HOME": str(tmp_path / "hf")}
    result = _run_script(
        "download_benchmark.py",
        "pope",
        str(tmp_path / "pope"),
        "--source",
        json.dumps(source),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode != 0
    assert "benchmark 'pope'" in result.stderr
    assert "lmms-lab/POPE" in result.stderr
    assert "benchmarks.pope.local_path" in result.stderr
    assert not (tmp_path / "pope").exists()


def test_model_local_path_is_copied_without_network(tmp_path):
    local = tmp_path / "local-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"weights")
    spec = {"family": "qwen2_vl", "source": "hub", "local_path": str(local)}
    provenance = hub.download_model("m", spec, tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == b"weights"
    assert provenance["files"] == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "out/download.json").read_text())["local_path"]
    with pytest.raises(FileNotFoundError, match="models.bad.local_path"):
        hub.download_model("bad", {"local_path": str(tmp_path)}, tmp_path / "o2")


# ---------------------------------------------------------------------------------
# Calibration source: TAMP's task split and the official random draw
# ---------------------------------------------------------------------------------


def test_task_ranges_follow_tamps_split_including_its_off_by_one():
    paths = ["coco/1.jpg", "coco/2.jpg", "sharegpt4v/a.jpg", "sharegpt4v/b.jpg"]
    paths += ["coco/3.jpg", "ocr/x.jpg", "ocr/y.jpg", "ocr/z.jpg"]
    records = [{"id": str(i), "image": p} for i, p in enumerate(paths)]
    # A task ends where the next *new* task starts (coco reappearing does not end
    # sharegpt4v); the last task loses its last row.
    assert hub.task_ranges(records) == {
        "coco": (0, 2),
        "sharegpt4v": (2, 5),
        "ocr": (5, 7),
    }
    with pytest.raises(ValueError, match="row 1"):
        hub.task_ranges([{"image": "a/b"}, {"id": "t"}])


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 36, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def raw_llava_next_data(tmp_path_factory):
    """A local copy in the raw format: annotation JSON plus image tarballs."""
    root = tmp_path_factory.mktemp("raw")
    folder = root / "llava_next_raw_format"
    folder.mkdir()
    records = [
        {"id": f"coco{i}", "image": f"coco/{i}.jpg", "conversations": []}
        for i in range(5)
    ]
    for i in range(300):
        records.append(
            {
                "id": f"sg{i}",
                "image": f"sharegpt4v/sam/{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\ndescribe the image"},
                    {"from": "gpt", "value": "a red circle" + " two" * (i % 3)},
                ],
            }
        )
    records += [{"id": "ocr0", "image": "ocr/0.jpg", "conversations": []}]
    (folder / "llava_next_raw_format_processed.json").write_text(json.dumps(records))
    for part in range(2):
        with tarfile.open(folder / f"images_{part}.tar.gz", "w:gz") as tar:
            for i in range(part, 300, 2):
                data = _png(i)
                info = tarfile.TarInfo(f"./sharegpt4v/sam/{i}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return root, records


def test_calibration_source_reproduces_the_official_draw(raw_llava_next_data, tmp_path):
    import datasets

    root, records = raw_llava_next_data
    calibration = {
        **copy.deepcopy(paper()["calibration"]),
        "n_samples": 16,
    }
    calibration["source"]["local_path"] = str(root)
    manifest = hub.download_calibration(calibration, tmp_path / "raw", seeds=[21, 42])
    start, end = 5, 305
    assert manifest["task_range"] == [start, end]
    source = datasets.load_from_disk(str(tmp_path / "raw/sharegpt4v"))["calib"]
    assert len(source) == end - start
    for seed in (21, 42):
        np.random.seed(seed)  # the official code: global seed, then np.random.choice
        official = np.random.choice(np.arange(start, end), size=16, replace=False)
        assert manifest["selected_rows"][str(seed)] == official.tolist()
        # The calibration_pool rule draws relative indices from the stored range.
        picked = [source[i] for i in select_indices(len(source), 16, seed)]
        assert [r["id"] for r in picked] == [records[k]["id"] for k in official]
        assert all(r["image"] is not None for r in picked)
        assert picked[0]["image"].size == (36, 20)
    with_images = sum(r is not None for r in source["image"])
    assert 16 <= with_images <= 32  # only the rows some seed draws carry an image


def test_calibration_pool_rule_runs_on_the_downloaded_source(
    raw_llava_next_data, tmp_path
):
    """download_calibration (local copy) -> scripts/calibration_pool.py with a tiny
    LLaVA-NeXT saved to disk: the pool has the drawn conversations and their masks."""
    import runpy

    from atvprune.models.tiny import tiny_llava_next

    root, records = raw_llava_next_data
    calibration = copy.deepcopy(paper()["calibration"])
    calibration.update(n_samples=4, seed=42)
    calibration["source"]["local_path"] = str(root)
    hub.download_calibration(calibration, tmp_path / "raw", seeds=[42])
    model, processor = tiny_llava_next(seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    script = runpy.run_path(str(REPO / "scripts" / "calibration_pool.py"))
    script["main"](
        tmp_path / "model",
        tmp_path / "raw",
        tmp_path / "pool",
        {"family": "llava_next", "dtype": "float32"},
        calibration,
    )
    manifest = json.loads((tmp_path / "pool/manifest.json").read_text())
    np.random.seed(42)
    official = np.random.choice(np.arange(5, 305), size=4, replace=False)
    assert [s["id"] for s in manifest["samples"]] == [
        records[k]["id"] for k in official
    ]
    assert all(s["n_image_tokens"] == 52 for s in manifest["samples"])


def test_local_gpu_profile_caps_gpu_jobs_at_one():
    profile = yaml.safe_load((REPO / "profiles/local-gpu/config.yaml").read_text())
    assert profile["resources"] == {"gpu": 1}
    assert profile["cores"] >= 8  # one 8-thread GPU job plus light CPU jobs
    assert profile["rerun-incomplete"] is True
