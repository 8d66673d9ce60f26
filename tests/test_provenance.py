"""results/table1.provenance.json on the smoke run: every cell of the table is traced to
its config entry, checkpoint and mask hashes, dataset and pool hashes, scoring mode,
git commit, package versions and the predictions file it was scored from; the
reported/delta columns are joined where a published value is known."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from snakemake.utils import validate
from test_dvc_roundtrip import CONFIG, dvc_workflow, run

from atvprune.io import sha256_dir, sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin(tmp_path_factory, smoke_run) -> Path:
    return dvc_workflow(tmp_path_factory, seed_from=smoke_run)


@pytest.fixture(scope="module")
def provenance(origin) -> dict:
    return json.loads((origin / "results/table1.provenance.json").read_text())


@pytest.fixture(scope="module")
def config(origin) -> dict:
    """The run's config as the workflow saw it (schema defaults filled in)."""
    config = yaml.safe_load((origin / CONFIG).read_text())
    validate(config, str(origin / "config/schema.yaml"))
    return config


def table_rows(origin: Path) -> list[dict]:
    with open(origin / "results/table1.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_record_per_row_and_cell(origin, provenance, config):
    rows = table_rows(origin)
    assert [(r["model"], r["method"], r["pattern"]) for r in rows] == [
        (p["model"], p["method"], p["pattern"]) for p in provenance["rows"]
    ]
    for row, record in zip(rows, provenance["rows"], strict=True):
        assert sorted(record["cells"]) == sorted(config["benchmarks"])
        for benchmark, cell in record["cells"].items():
            assert f"{cell['value']:.2f}" == row[benchmark], (row["method"], benchmark)
    table = provenance["table"]
    assert table["sha256"] == sha256_file(origin / "results/table1.csv")


def test_cells_name_the_predictions_they_were_scored_from(origin, provenance, config):
    mode = config["evaluation"]["scoring_mode"]
    first_commit = run(origin, "git", "rev-list", "--max-parents=0", "HEAD").stdout
    for record in provenance["rows"]:
        for benchmark, cell in record["cells"].items():
            predictions = origin / cell["predictions"]["path"]
            assert predictions.suffix == ".jsonl"
            assert cell["predictions"]["sha256"] == sha256_file(predictions)
            metric = origin / cell["metric_file"]["path"]
            assert cell["metric_file"]["sha256"] == sha256_file(metric)
            assert json.loads(metric.read_text())["headline"] == cell["headline"]
            assert cell["scoring_mode"] == mode
            dataset = cell["dataset"]
            assert (
                dataset["local_path"] == config["benchmarks"][benchmark]["local_path"]
            )
            assert dataset["sha256"] == sha256_dir(origin / dataset["local_path"])
            assert cell["git_commit"] == first_commit.strip()
            environment = provenance["environments"][cell["environment"]]
            assert environment["torch"] == torch.__version__
            assert environment["transformers"] == transformers.__version__


def test_rows_name_config_checkpoint_masks_and_pool(origin, provenance, config):
    pool = json.loads(
        (origin / "data/calib/tiny-llava/sharegpt4v/manifest.json").read_text()
    )
    base_sha = sha256_dir(origin / "data/models/tiny-llava")
    for record in provenance["rows"]:
        ckpt = record["checkpoint"]
        assert ckpt["sha256"] == sha256_dir(origin / ckpt["path"])
        assert record["config"]["model"] == config["models"]["tiny-llava"]
        assert record["config"]["pattern"] == record["pattern"]
        if record["method"] == "dense":
            assert ckpt["path"] == "data/models/tiny-llava"
            assert ckpt["sha256"] == base_sha
            assert "mask_sha256" not in ckpt
            continue
        assert record["config"]["method"] == config["methods"][record["method"]]
        assert ckpt["format"] == "atvprune-delta/1"
        assert ckpt["encodings"] == ["mask"]  # magnitude and ATV only zero weights
        assert ckpt["stored_bytes"] < ckpt["dense_bytes"] / 10
        stats = json.loads((origin / ckpt["path"] / "prune_stats.json").read_text())
        assert ckpt["mask_sha256"] == stats["mask_sha256"]
        assert len(ckpt["mask_sha256"]) == 2 * 7  # 2 decoder layers x 7 Linears
        prune = ckpt["prune"]
        assert prune["base_model_sha256"] == base_sha
        assert prune["calibration_pool_sha256"] == pool["pool_sha256"]
        assert prune["seed"] == config["calibration"]["seed"]
        assert provenance["environments"][prune["environment"]]["python"]


def test_reported_and_delta_joined_where_known(origin, provenance):
    rows = {r["method"]: r for r in table_rows(origin)}
    atv = rows["atv"]
    assert float(atv["reported"]) == 95.0
    assert math.isclose(
        float(atv["delta"]), float(atv["retention"]) - 95.0, abs_tol=0.011
    )
    assert rows["magnitude"]["reported"] == "" and rows["magnitude"]["delta"] == ""
    derived = {r["method"]: r["derived"] for r in provenance["rows"]}
    assert derived["atv"]["reported"]["value"] == 95.0
    assert derived["atv"]["reported"]["source"].startswith("test fixture")
    assert derived["magnitude"]["reported"]["value"] is None
    assert derived["dense"]["retention"]["value"] == 100.0


def test_provenance_written_atomically(origin):
    leftovers = [p.name for p in (origin / "results").glob(".*.tmp")]
    assert leftovers == []
