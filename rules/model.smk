# Models. Embedded profile: the tiny LLaVA is built from LlavaConfig and instruction-tuned on
# the mini world. Paper profile: a pinned snapshot is downloaded (see download_model).


rule train_model:
    input:
        world="data/world",
        model_code="atvprune/world/tiny_llava.py",
        train_code="atvprune/world/train.py",
        data_code="atvprune/world/instruct.py",
    output:
        directory("data/models/{model}"),
    log:
        "logs/train_model/{model}.log",
    benchmark:
        "benchmarks/train_model/{model}.tsv"
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=30,
    params:
        spec=lambda wc: config["models"][wc.model],
    script:
        "../scripts/train_model.py"
