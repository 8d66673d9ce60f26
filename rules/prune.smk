# One job per (model, method, sparsity pattern): the sequential layer-wise engine with the
# method's statistic and mask rule. The method's own module and the engine are inputs, so a
# change to the math re-runs exactly the affected jobs.


rule prune:
    input:
        model="data/models/{model}",
        pool=f"data/calib/{{model}}/{POOL}",
        engine="atvprune/engine.py",
        plugins="atvprune/pruners.py",
        method_code=lambda wc: method_module(wc.method),
    output:
        directory("results/ckpt/{model}/{method}_s{pattern}"),
    log:
        "logs/prune/{model}/{method}_s{pattern}.log",
    benchmark:
        "benchmarks/prune/{model}/{method}_s{pattern}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: JOB_THREADS
    # Every pruned checkpoint before any evaluation that could wait: a prune job left
    # for last puts its evaluation, DVC tracking and the table on the critical path.
    priority: 10
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=64000 if not EMBEDDED else 4000,
        runtime=240 if not EMBEDDED else 20,
    params:
        model_spec=lambda wc: config["models"][wc.model],
        method_spec=lambda wc: method_params(wc.method),
        pattern=lambda wc: pattern_from_tag(wc.pattern),
        n_samples=config["calibration"]["n_samples"],
        seed=config["calibration"]["seed"],
    script:
        "../scripts/prune.py"
