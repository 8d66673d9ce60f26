# Paper profile: everything fetched from the Hugging Face hub, each at the commit pinned in
# the config. Downloads are local rules (compute nodes are often offline); a missing
# revision or an unreachable hub fails the job with a message naming the model or dataset
# and how to point the config at a local copy. The embedded default never requests these.


rule download_model:
    output:
        directory("data/models/{model}"),
    log:
        "logs/download_model/{model}.log",
    wildcard_constraints:
        model=one_of(HUB_MODELS),
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        spec=lambda wc: config["models"][wc.model],
    script:
        "../scripts/download_model.py"


rule download_calibration:
    output:
        directory("data/raw/{pool}"),
    log:
        "logs/download_calibration/{pool}.log",
    wildcard_constraints:
        pool=one_of([] if EMBEDDED else [POOL]),
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        calibration=config["calibration"],
        seeds=calibration_seeds(),
    script:
        "../scripts/download_calibration.py"


rule download_benchmark:
    output:
        directory("data/raw/benchmarks/{benchmark}"),
    log:
        "logs/download_benchmark/{benchmark}.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        source=lambda wc: config["benchmarks"][wc.benchmark],
    script:
        "../scripts/download_benchmark.py"
