# ATV-Pruning reproduction: dataset -> model -> calibration pool -> pruning per method and
# sparsity -> evaluation per benchmark -> results/table1.csv + figures.
# The embedded default (config/config.yaml) runs the whole DAG on a CPU mini world;
# `--configfile config/paper.yaml` selects the paper's models and benchmarks.


# `--configfile X` replaces the embedded default instead of being merged into it, so a
# smaller config (config/smoke.yaml) never inherits methods or benchmarks it did not list.
if not config:

    configfile: "config/config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    model="[A-Za-z0-9_.-]+",
    method="[a-z0-9_]+",
    benchmark="[a-z0-9_]+",
    pattern="[0-9.]+|[0-9]+-[0-9]+",
    run="dense|[a-z0-9_]+_s([0-9.]+|[0-9]+-[0-9]+)",
    pool="[a-z0-9_]+",


localrules:
    all,


rule all:
    input:
        "results/table1.csv",
        "results/table1.md",
        "results/figures/accuracy_vs_sparsity.png",
        "results/figures/atv_layers.png",
        ["results/table_ablation.csv", "results/figures/ablation.png"] if ABLATION else [],


include: "rules/data.smk"
include: "rules/download.smk"
include: "rules/model.smk"
include: "rules/calibration.smk"
include: "rules/prune.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/ablation.smk"
include: "rules/dvc.smk"
