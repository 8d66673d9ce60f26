# The calibration pool: N conversations drawn with a fixed seed, rendered with the model's
# chat template and stored with each sample's image-token mask. Every method prunes from it.


rule calibration_pool:
    input:
        model="data/models/{model}",
        source=calibration_source,
    output:
        directory("data/calib/{model}/{pool}"),
    log:
        "logs/calibration_pool/{model}/{pool}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        model_spec=lambda wc: config["models"][wc.model],
        calibration=lambda wc: calibration_spec(wc.model),
    script:
        "../scripts/calibration_pool.py"
