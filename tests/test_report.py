"""Tests for atvprune.report: hand-checked table values, ordering, errors,
byte-identical CSV/PNG output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from atvprune import report

BENCHMARKS = ["pope", "mme"]

# (run, method, pattern, pope accuracy (0-1), mme perception (0-2000))
RUNS = [
    ("dense", "dense", "dense", 0.80, 1600.0),
    ("wanda_s0.5", "wanda", "0.5", 0.72, 1200.0),
    ("wanda_s0.6", "wanda", "0.6", 0.60, 800.0),
    ("wanda_nm2_4", "wanda", "2:4", 0.56, 960.0),
    ("atv_s0.5", "atv", "0.5", 0.76, 1400.0),
    ("atv_s0.6", "atv", "0.6", 0.64, 1000.0),
]

# Hand computation. average = (pope*100 + mme/20) / 2;
# retention = 100 * (pope/pope_dense + mme/mme_dense) / 2 with dense 0.80 / 1600.
# dense: (80 + 80)/2 = 80;             100
# wanda 0.5: (72 + 60)/2 = 66;         100 * (0.90 + 0.750)/2 = 82.50
# wanda 0.6: (60 + 40)/2 = 50;         100 * (0.75 + 0.500)/2 = 62.50
# wanda 2:4: (56 + 48)/2 = 52;         100 * (0.70 + 0.600)/2 = 65.00
# atv 0.5:   (76 + 70)/2 = 73;         100 * (0.95 + 0.875)/2 = 91.25
# atv 0.6:   (64 + 50)/2 = 57;         100 * (0.80 + 0.625)/2 = 71.25
EXPECTED_CSV_DEFAULT_ORDER = (
    "model,method,pattern,pope,mme,average,retention\n"
    "tiny,dense,dense,80.00,1600.00,80.00,100.00\n"
    "tiny,atv,0.5,76.00,1400.00,73.00,91.25\n"
    "tiny,atv,0.6,64.00,1000.00,57.00,71.25\n"
    "tiny,wanda,0.5,72.00,1200.00,66.00,82.50\n"
    "tiny,wanda,0.6,60.00,800.00,50.00,62.50\n"
    "tiny,wanda,2:4,56.00,960.00,52.00,65.00\n"
)


def write_metric(
    root: Path,
    model: str,
    run: str,
    method: str,
    pattern: str,
    benchmark: str,
    native: float,
    **overrides: object,
) -> Path:
    """Write one metric JSON as the evaluate step would."""
    if benchmark == "mme":
        metric, scale = "mme_perception_score", 1.0
        metrics = {metric: native, "mme_cognition_score": 300.0}
    else:
        metric, scale = f"{benchmark}_accuracy", 100.0
        metrics = {metric: native, f"{benchmark}_f1_score": 0.5}
    data = {
        "model": model,
        "run": run,
        "method": method,
        "pattern": pattern,
        "benchmark": benchmark,
        "n_items": 150,
        "scoring_mode": "lmms-eval-0.4",
        "metrics": metrics,
        "headline_metric": metric,
        "headline_scale": scale,
        "headline": native * scale,
        "predictions": f"results/eval/{model}/{run}/{benchmark}.jsonl",
        "predictions_sha256": "0" * 64,
    }
    data.update(overrides)
    path = root / model / run / f"{benchmark}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def metric_files(tmp_path: Path) -> list[Path]:
    files = []
    for run, method, pattern, pope, mme in RUNS:
        files.append(write_metric(tmp_path, "tiny", run, method, pattern, "pope", pope))
        files.append(write_metric(tmp_path, "tiny", run, method, pattern, "mme", mme))
    return files


def test_table_values_and_default_order(metric_files, tmp_path):
    df = report.build_table(metric_files, BENCHMARKS)
    out = tmp_path / "out" / "table1.csv"
    report.write_table_csv(df, out)
    assert out.read_bytes() == EXPECTED_CSV_DEFAULT_ORDER.encode()
    assert df.attrs["notes"] == []
    assert list(df.columns) == [
        *report.KEY_COLUMNS,
        *BENCHMARKS,
        "average",
        "retention",
    ]


def test_method_order_and_labels(metric_files):
    df = report.build_table(
        metric_files,
        BENCHMARKS,
        benchmark_labels={"pope": "POPE", "mme": "MME"},
        method_order=["dense", "wanda", "atv", "sparsegpt"],
    )
    assert list(df["method"]) == ["dense", "wanda", "wanda", "wanda", "atv", "atv"]
    assert list(df["pattern"]) == ["dense", "0.5", "0.6", "2:4", "0.5", "0.6"]
    assert list(df.columns[3:5]) == ["POPE", "MME"]
    assert list(df["retention"]) == [100.0, 82.5, 62.5, 65.0, 91.25, 71.25]
    assert list(df["average"]) == [80.0, 66.0, 50.0, 52.0, 73.0, 57.0]


def test_method_missing_from_method_order_is_an_error(metric_files):
    with pytest.raises(ValueError, match="atv"):
        report.build_table(metric_files, BENCHMARKS, method_order=["wanda"])


def test_pattern_sort_key():
    patterns = ["4:8", "dense", "0.6", "2:4", "0.45", "0.5", "8:16"]
    ordered = sorted(patterns, key=lambda p: report.parse_pattern(p).sort_key)
    assert ordered == ["dense", "0.45", "0.5", "0.6", "2:4", "4:8", "8:16"]
    assert report.parse_pattern("4:8").ratio == 0.5
    for bad in ["1.2", "0", "4:2", "2:", "half"]:
        with pytest.raises(ValueError, match="pattern"):
            report.parse_pattern(bad)


def test_shuffled_input_gives_identical_csv(metric_files, tmp_path):
    shuffled = list(metric_files)
    random.Random(7).shuffle(shuffled)
    assert shuffled != metric_files
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    report.write_table_csv(report.build_table(metric_files, BENCHMARKS), first)
    report.write_table_csv(report.build_table(shuffled[::-1], BENCHMARKS), second)
    assert first.read_bytes() == second.read_bytes()


def test_missing_metric_file_is_named(metric_files):
    files = [f for f in metric_files if f.parts[-2:] != ("wanda_s0.6", "mme.json")]
    with pytest.raises(ValueError) as err:
        report.build_table(files, BENCHMARKS)
    message = str(err.value)
    assert "model='tiny'" in message
    assert "run='wanda_s0.6'" in message
    assert "benchmark='mme'" in message


def test_run_evaluated_only_on_other_benchmarks_is_missing(metric_files, tmp_path):
    extra = write_metric(tmp_path, "tiny", "atv_s0.7", "atv", "0.7", "gqa", 0.5)
    with pytest.raises(ValueError, match="run='atv_s0.7', benchmark='pope'"):
        report.build_table([*metric_files, extra], BENCHMARKS)


def test_missing_key_names_file_and_key(tmp_path):
    path = write_metric(tmp_path, "tiny", "dense", "dense", "dense", "pope", 0.8)
    data = json.loads(path.read_text())
    del data["headline_scale"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"pope\.json: missing required key "):
        report.load_metric_file(path)
    with pytest.raises(ValueError, match="headline_scale"):
        report.load_metric_file(path)


def test_inconsistent_headline_is_rejected(tmp_path):
    path = write_metric(
        tmp_path, "tiny", "dense", "dense", "dense", "pope", 0.8, headline=0.8
    )
    with pytest.raises(ValueError, match="headline 0.8 != "):
        report.load_metric_file(path)


def test_no_dense_run_is_an_error(metric_files):
    files = [f for f in metric_files if f.parent.name != "dense"]
    with pytest.raises(ValueError, match="no dense run for model 'tiny'"):
        report.build_table(files, BENCHMARKS)


def test_mixed_headline_metric_in_one_column_is_an_error(metric_files, tmp_path):
    write_metric(
        tmp_path,
        "tiny",
        "atv_s0.6",
        "atv",
        "0.6",
        "pope",
        0.64,
        headline_metric="pope_f1_score",
        metrics={"pope_f1_score": 0.64},
    )
    with pytest.raises(ValueError, match="headline_metric differs"):
        report.build_table(metric_files, BENCHMARKS)


def test_zero_dense_benchmark_is_excluded_and_noted(tmp_path):
    files = [
        write_metric(tmp_path, "tiny", "dense", "dense", "dense", "pope", 0.0),
        write_metric(tmp_path, "tiny", "dense", "dense", "dense", "mme", 1600.0),
        write_metric(tmp_path, "tiny", "atv_s0.5", "atv", "0.5", "pope", 0.1),
        write_metric(tmp_path, "tiny", "atv_s0.5", "atv", "0.5", "mme", 1200.0),
    ]
    df = report.build_table(files, BENCHMARKS)
    # retention uses mme only: 1200/1600 = 75; average = (10 + 60)/2 = 35.
    assert list(df["retention"]) == [100.0, 75.0]
    assert list(df["average"]) == [40.0, 35.0]
    assert len(df.attrs["notes"]) == 1
    assert "'pope'" in df.attrs["notes"][0]


def test_reported_join(metric_files, tmp_path):
    reported = tmp_path / "reported.csv"
    reported.write_text(
        "model,method,pattern,benchmark_or_column,value,source\n"
        "tiny,atv,0.50,retention,90.00,poster\n"
        "tiny,wanda,0.6,retention,62.50,poster\n"
        "tiny,wanda,0.5,pope,99.00,listing\n"  # not a retention row: ignored
        "other,atv,0.6,retention,77.01,poster\n"  # other model: ignored
    )
    df = report.build_table(metric_files, BENCHMARKS, reported_csv=reported)
    out = tmp_path / "t.csv"
    report.write_table_csv(df, out)
    lines = out.read_text().splitlines()
    assert lines[0].endswith(",average,retention,reported,delta")
    assert lines[1] == "tiny,dense,dense,80.00,1600.00,80.00,100.00,,"
    assert lines[2] == "tiny,atv,0.5,76.00,1400.00,73.00,91.25,90.00,1.25"
    assert lines[3] == "tiny,atv,0.6,64.00,1000.00,57.00,71.25,,"
    assert lines[5] == "tiny,wanda,0.6,60.00,800.00,50.00,62.50,62.50,0.00"


def test_reported_csv_bad_value_names_line(metric_files, tmp_path):
    reported = tmp_path / "reported.csv"
    reported.write_text(
        "model,method,pattern,benchmark_or_column,value,source\n"
        "tiny,atv,0.5,retention,ninety,poster\n"
    )
    with pytest.raises(ValueError, match=r"reported\.csv: line 2: column 'value'"):
        report.build_table(metric_files, BENCHMARKS, reported_csv=reported)


def test_markdown_has_table_and_definitions(metric_files, tmp_path):
    df = report.build_table(metric_files, BENCHMARKS)
    out = tmp_path / "table1.md"
    report.write_table_markdown(df, out, notes=["Tiny CPU run."])
    text = out.read_text()
    assert text.splitlines()[0] == (
        "| model | method | pattern | pope | mme | average | retention |"
    )
    assert "| tiny | atv | 0.5 | 76.00 | 1400.00 | 73.00 | 91.25 |" in text
    assert "## Notes" in text
    for note in report.TABLE_NOTES:
        assert f"- {note}" in text
    assert "- Tiny CPU run." in text
    assert "divided by 20" in text and "(pruned headline / dense headline" in text
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic temp file is gone


def write_prune_stats(root: Path, run: str, method: str, pattern: str) -> Path:
    ratio = report.parse_pattern(pattern).ratio
    layers = []
    for i in range(4):
        entry = {"layer": i, "sparsity": ratio}
        if method == "atv":
            drift = ratio * (i + 1) / 4
            entry |= {"mean_drift": drift, "k_mean": 10 - 2 * i, "k": [10 - 2 * i] * 3}
        layers.append(entry)
    data = {
        "model": "tiny",
        "run": run,
        "method": method,
        "pattern": pattern,
        "overall_sparsity": ratio,
        "layers": layers,
        "wall_time_s": 1.2,
        "peak_memory_mb": 100.0,
    }
    path = root / run / "prune_stats.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_accuracy_plot_is_written_and_reproducible(metric_files, tmp_path):
    df = report.build_table(metric_files, BENCHMARKS)
    first, second = tmp_path / "a" / "acc.png", tmp_path / "b" / "acc.png"
    report.plot_accuracy_vs_sparsity(df, first)
    report.plot_accuracy_vs_sparsity(df, second)
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as image:
        assert "Software" not in image.info  # no version/date metadata
        assert image.size[0] > 1000


def test_atv_layer_plot_is_written_and_reproducible(tmp_path):
    files = [
        write_prune_stats(tmp_path, "atv_s0.6", "atv", "0.6"),
        write_prune_stats(tmp_path, "atv_s0.5", "atv", "0.5"),
        write_prune_stats(tmp_path, "wanda_s0.5", "wanda", "0.5"),  # skipped
    ]
    first, second = tmp_path / "layers1.png", tmp_path / "layers2.png"
    report.plot_atv_layers(files, first)
    report.plot_atv_layers(files[::-1], second)
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first.read_bytes() == second.read_bytes()


def test_atv_stats_without_drift_is_an_error(tmp_path):
    path = write_prune_stats(tmp_path, "atv_s0.5", "atv", "0.5")
    data = json.loads(path.read_text())
    del data["layers"][2]["mean_drift"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"layers\[2\] missing required key 'mean_drift'"
    ):
        report.load_prune_stats(path)
    with pytest.raises(ValueError, match="no prune_stats file with method 'atv'"):
        report.plot_atv_layers([write_prune_stats(tmp_path, "w", "wanda", "0.5")], path)
