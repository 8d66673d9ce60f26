# The paper's ablations at one pattern: calibration-token policies and ATV's alpha sweep.
# Each row is an ordinary prune + evaluate run; this rule only collects them.


rule table_ablation:
    input:
        metrics=eval_metrics(["dense", *dict.fromkeys(ABLATION_RUNS)]),
        checkpoints=[
            f"results/ckpt/{m}/{r}" for m in MODELS for r in dict.fromkeys(ABLATION_RUNS)
        ],
        ablation_code="atvprune/ablation.py",
    output:
        csv=report("results/table_ablation.csv", category="Tables"),
        figure=report("results/figures/ablation.png", category="Figures"),
    log:
        "logs/table/ablation.log",
    localrule: True
    conda:
        "../envs/plot.yaml"
    params:
        rows=ABLATION,
        pattern=config["ablation"]["pattern"] if ABLATION else None,
        models=MODELS,
        benchmarks=BENCHMARKS,
    script:
        "../scripts/ablation_table.py"
