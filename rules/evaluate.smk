# One job per (checkpoint, benchmark): batched greedy generation, predictions as JSONL beside
# the metric JSON so every number can be re-scored and audited.


rule evaluate:
    input:
        checkpoint=checkpoint_dir,
        data=benchmark_data,
        scorer="atvprune/benchmarks/{benchmark}.py",
    output:
        metrics="results/eval/{model}/{run}/{benchmark}.json",
        predictions="results/eval/{model}/{run}/{benchmark}.jsonl",
    log:
        "logs/evaluate/{model}/{run}/{benchmark}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{run}/{benchmark}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: JOB_THREADS
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=32000 if not EMBEDDED else 3000,
        runtime=120 if not EMBEDDED else 10,
    params:
        model_spec=lambda wc: config["models"][wc.model],
        source=lambda wc: config["benchmarks"][wc.benchmark],
        evaluation=config["evaluation"],
        run_spec=lambda wc: run_spec(wc.run),
    script:
        "../scripts/evaluate.py"
