# One job per checkpoint: the model is loaded once and every benchmark is evaluated with
# batched greedy generation; per benchmark, predictions (JSONL) sit beside the metric JSON so
# every number can be re-scored and audited. One job per (checkpoint, benchmark) would load
# each 7-8B checkpoint nine times on the paper profile, and on the embedded default the
# interpreter start-up (~4 s) dwarfed each benchmark's ~0.5 s of generation.


rule evaluate:
    input:
        checkpoint=checkpoint_dir,
        data=benchmark_data,
        scorers=expand("atvprune/benchmarks/{benchmark}.py", benchmark=BENCHMARKS),
    output:
        metrics=expand(
            "results/eval/{{model}}/{{run}}/{benchmark}.json", benchmark=BENCHMARKS
        ),
        predictions=expand(
            "results/eval/{{model}}/{{run}}/{benchmark}.jsonl", benchmark=BENCHMARKS
        ),
    log:
        "logs/evaluate/{model}/{run}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{run}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: JOB_THREADS
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=32000 if not EMBEDDED else 3000,
        runtime=9 * 120 if not EMBEDDED else 15,
    params:
        model_spec=lambda wc: config["models"][wc.model],
        sources={b: config["benchmarks"][b] for b in BENCHMARKS},
        evaluation=config["evaluation"],
        run_spec=lambda wc: run_spec(wc.run),
        out_dir="results/eval/{model}/{run}",
    script:
        "../scripts/evaluate.py"
