# Datasets. Embedded profile: the synthetic mini world (all nine benchmark formats, training
# conversations and the calibration source) generated from one seed. Paper profile: the hub
# downloads in rules/download.smk.


rule world:
    input:
        generator="atvprune/world/benchmarks.py",
        scenes="atvprune/world/scenes.py",
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
    script:
        "../scripts/build_world.py"
