"""Rule table_ablation: results/table_ablation.csv and results/figures/ablation.png from
the ablation runs' metric JSONs and prune_stats.json (see atvprune/ablation.py)."""

import argparse
from pathlib import Path

import pandas as pd

from atvprune.ablation import build_ablation_table, write_ablation
from atvprune.runlog import log_to


def main(metric_files, rows, pattern, models, benchmarks, outputs, log_path=None):
    with log_to(log_path) as log:
        tag = pattern.replace(":", "-")
        tables = []
        for model in models:
            stats = {
                method: Path(f"results/ckpt/{model}/{method}_s{tag}/prune_stats.json")
                for _, _, method, _ in rows
            }
            files = [Path(f) for f in metric_files if f"/eval/{model}/" in str(f)]
            tables.append(
                build_ablation_table(rows, model, pattern, files, stats, benchmarks)
            )
        table = pd.concat(tables, ignore_index=True)
        write_ablation(table, Path(outputs["csv"]), Path(outputs["figure"]))
        log.info("ablation table: %d rows -> %s", len(table), outputs["csv"])


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(
        list(sm.input.metrics),
        [tuple(row) for row in sm.params.rows],
        sm.params.pattern,
        sm.params.models,
        sm.params.benchmarks,
        {"csv": sm.output.csv, "figure": sm.output.figure},
        sm.log[0],
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    raise SystemExit("run through snakemake: the rows come from the config")
