# The paper's table (CSV + Markdown) and its figures, from the per-benchmark metric JSONs.
# One job, so that the main target results/table1.csv also leaves the figures up to date.


rule table:
    input:
        metrics=eval_metrics(),
        atv_checkpoints=atv_checkpoints(),
        tracked=dvc_tracked(),
        report_code="atvprune/report.py",
    output:
        csv=report("results/table1.csv", category="Tables"),
        markdown=report("results/table1.md", category="Tables"),
        accuracy=report("results/figures/accuracy_vs_sparsity.png", category="Figures"),
        atv_layers=report("results/figures/atv_layers.png", category="Figures"),
    log:
        "logs/table/table1.log",
    localrule: True
    conda:
        "../envs/plot.yaml"
    params:
        benchmarks=BENCHMARKS,
        methods=METHODS,
        models=MODELS,
        reported=config.get("report", {}).get("reported_values"),
    script:
        "../scripts/table.py"
