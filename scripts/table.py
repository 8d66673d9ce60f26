"""Rule table: results/table1.csv + Markdown from every per-benchmark metric JSON, the
figures (score vs sparsity per method; ATV's per-layer drift and visual-token budget)
and results/table1.provenance.json (where every cell came from)."""

import argparse
from pathlib import Path

from atvprune.io import write_json_atomic
from atvprune.provenance import build_provenance
from atvprune.report import (
    TABLE_NOTES,
    build_table,
    plot_accuracy_vs_sparsity,
    plot_atv_layers,
    plot_placeholder,
    write_table_csv,
    write_table_markdown,
)
from atvprune.runlog import log_to


def main(
    metric_files,
    prune_stats,
    benchmarks,
    methods,
    models,
    reported,
    outputs,
    log_path=None,
    model_specs=None,
    method_specs=None,
) -> None:
    with log_to(log_path) as log:
        reported_csv = Path(reported) if reported and Path(reported).exists() else None
        table = build_table(
            metric_files,
            benchmarks,
            reported_csv=reported_csv,
            method_order=methods,
            model_order=models,
        )
        write_table_csv(table, Path(outputs["csv"]))
        write_table_markdown(table, Path(outputs["markdown"]), notes=TABLE_NOTES)
        plot_accuracy_vs_sparsity(table, Path(outputs["accuracy"]))
        if prune_stats:
            plot_atv_layers(list(prune_stats), Path(outputs["atv_layers"]))
        else:
            plot_placeholder(Path(outputs["atv_layers"]), "no ATV run in this config")
        if outputs.get("provenance"):
            provenance = build_provenance(
                table,
                metric_files,
                benchmarks,
                model_specs or {},
                method_specs or {},
                outputs["csv"],
                reported_csv,
            )
            write_json_atomic(Path(outputs["provenance"]), provenance)
        log.info(
            "table with %d rows from %d metric files", len(table), len(metric_files)
        )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(
        list(sm.input.metrics),
        [f"{c}/prune_stats.json" for c in sm.input.atv_checkpoints],
        sm.params.benchmarks,
        sm.params.methods,
        sm.params.models,
        sm.params.reported,
        dict(sm.output.items()),
        sm.log[0],
        sm.params.model_specs,
        sm.params.method_specs,
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metric_files", nargs="+")
    parser.add_argument("--prune-stats", nargs="*", default=[])
    parser.add_argument("--benchmarks", nargs="+", required=True)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--reported", default=None)
    parser.add_argument("--out", default="report_out")
    args = parser.parse_args()
    out = Path(args.out)
    outputs = {
        "csv": out / "table1.csv",
        "markdown": out / "table1.md",
        "accuracy": out / "accuracy_vs_sparsity.png",
        "atv_layers": out / "atv_layers.png",
        "provenance": out / "table1.provenance.json",
    }
    main(
        args.metric_files,
        args.prune_stats,
        args.benchmarks,
        args.methods,
        None,
        args.reported,
        outputs,
    )
