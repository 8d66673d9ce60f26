"""The whole workflow, end to end, on the smallest config (config/smoke.yaml).

The repository's workflow files are copied into a temporary directory so the run behaves
like a fresh clone and never touches the developer's data/ or results/.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from workflow_tools import (  # noqa: F401  (re-exported for the other test modules)
    REPO,
    SNAKEMAKE,
    WORKFLOW_FILES,
    copy_workflow,
    snakemake,
)


def read_table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_table_has_dense_and_every_run_with_every_benchmark(smoke_run):
    config = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    rows = read_table(smoke_run / "results/table1.csv")
    runs = [(r["method"], r["pattern"]) for r in rows]
    expected = [("dense", "dense")] + [
        (m, p) for m in config["methods"] for p in config["sparsities"]
    ]
    assert sorted(runs) == sorted(expected)
    for row in rows:
        for benchmark in config["benchmarks"]:
            assert row[benchmark] != "", (row["method"], benchmark)
    assert "| dense |" in (smoke_run / "results/table1.md").read_text()
    for figure in ("accuracy_vs_sparsity.png", "atv_layers.png"):
        assert (smoke_run / "results/figures" / figure).stat().st_size > 1000


def test_dense_beats_60_percent_magnitude(smoke_run):
    rows = {r["method"]: r for r in read_table(smoke_run / "results/table1.csv")}
    assert float(rows["dense"]["average"]) > float(rows["magnitude"]["average"])


def test_nothing_left_to_do_after_the_run(smoke_run):
    result = snakemake(
        smoke_run, "-n", "results/table1.csv", "--configfile", "config/smoke.yaml"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_every_artefact_has_its_record(smoke_run):
    ckpt = smoke_run / "results/ckpt/tiny-llava/atv_s0.6"
    for name in ("prune_stats.json", "provenance.json", "checkpoint.json"):
        assert (ckpt / name).exists(), name
    predictions = smoke_run / "results/eval/tiny-llava/dense/pope.jsonl"
    assert predictions.read_text().count("\n") > 10


def test_invalid_config_fails_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    bad = yaml.safe_load((workdir / "config/smoke.yaml").read_text())
    bad["methods"]["mystery"] = {"method": "no_such_method"}
    (workdir / "config/bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(
        workdir, "-n", "results/table1.csv", "--configfile", "config/bad.yaml"
    )
    assert result.returncode != 0
    assert "no_such_method" in result.stdout + result.stderr
    assert not (workdir / "data").exists() or not any((workdir / "data").iterdir())


def test_two_clean_runs_give_identical_outputs(smoke_run, smoke_run_again):
    """Same config, fresh directory: byte-identical table, masks and predictions.
    `smoke_run_again` is a second clean run from scratch (world, training, pruning,
    evaluation) in its own copy of the repository, started with `smoke_run`."""
    again = smoke_run_again
    for name in (
        "results/table1.csv",
        "results/table1.md",
        "results/table_ablation.csv",
    ):
        assert (smoke_run / name).read_bytes() == (again / name).read_bytes(), name
    for stats in sorted((smoke_run / "results/ckpt").rglob("prune_stats.json")):
        first = json.loads(stats.read_text())["mask_sha256"]
        second = json.loads((again / stats.relative_to(smoke_run)).read_text())
        assert first == second["mask_sha256"], stats
    for predictions in sorted((smoke_run / "results/eval").rglob("*.jsonl")):
        twin = again / predictions.relative_to(smoke_run)
        assert predictions.read_bytes() == twin.read_bytes(), predictions


def test_ablation_table_rows_and_alpha_zero_equals_text_only(smoke_run):
    rows = read_table(smoke_run / "results/table_ablation.csv")
    assert [(r["ablation"], r["row"]) for r in rows] == [
        ("reference", "dense"),
        ("policy", "text_only"),
        ("policy", "adaptive"),
        ("alpha", "0"),
        ("alpha", "1"),
    ]
    by_row = {(r["ablation"], r["row"]): r for r in rows}
    # The adaptive policy and alpha = 1 are one run (no pruning job twice).
    assert by_row[("policy", "adaptive")]["run"] == "atv_s0.6"
    assert by_row[("alpha", "1")]["run"] == "atv_s0.6"
    assert float(by_row[("alpha", "0")]["visual_tokens_per_sample"]) == 0.0
    assert float(by_row[("alpha", "1")]["visual_tokens_per_sample"]) > 0.0
    ckpt = smoke_run / "results/ckpt/tiny-llava"
    text_only = json.loads((ckpt / "abl_text_only_s0.6/prune_stats.json").read_text())
    alpha_zero = json.loads((ckpt / "abl_alpha_0_s0.6/prune_stats.json").read_text())
    assert text_only["mask_sha256"] == alpha_zero["mask_sha256"]
    assert (smoke_run / "results/figures/ablation.png").stat().st_size > 10_000
