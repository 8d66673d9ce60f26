# Datasets. Embedded profile: the synthetic mini world (all nine benchmark formats, training
# conversations and the calibration source) generated from one seed.


rule world:
    output:
        directory("data/world"),
    log:
        "logs/world/world.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        seed=config.get("world", {}).get("seed"),
        sizes=config.get("world", {}).get("sizes"),
        world_code=workflow.source_path("../atvprune/world/benchmarks.py"),
    script:
        "../scripts/build_world.py"
