# The paper's table (CSV + Markdown), its provenance (where every cell came from) and its
# figures, from the per-benchmark metric JSONs. One job, so that the main target
# results/table1.csv also leaves the figures and the provenance up to date.
# `snakemake --report results/report.html` renders all of it with report/workflow.rst.


report: "../report/workflow.rst"


rule table:
    input:
        metrics=eval_metrics(),
        checkpoints=[
            f"results/ckpt/{m}/{r}" for m in MODELS for r in RUNS if r != "dense"
        ],
        base_models=expand("data/models/{model}", model=MODELS),
        atv_checkpoints=atv_checkpoints(),
        tracked=dvc_tracked(),
        report_code="atvprune/report.py",
        provenance_code="atvprune/provenance.py",
    output:
        csv=report(
            "results/table1.csv",
            category="Tables",
            caption="../report/table1.rst",
        ),
        markdown=report("results/table1.md", category="Tables"),
        provenance=report(
            "results/table1.provenance.json",
            category="Provenance",
            caption="../report/provenance.rst",
        ),
        accuracy=report(
            "results/figures/accuracy_vs_sparsity.png",
            category="Figures",
            caption="../report/accuracy_vs_sparsity.rst",
        ),
        atv_layers=report(
            "results/figures/atv_layers.png",
            category="Figures",
            caption="../report/atv_layers.rst",
        ),
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
        model_specs={m: config["models"][m] for m in MODELS},
        method_specs={m: config["methods"][m] for m in METHODS},
    script:
        "../scripts/table.py"
