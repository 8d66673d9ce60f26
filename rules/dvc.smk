# Versioning: DVC is the content store, Snakemake the only DAG engine. One job per artefact,
# all through `dvc --wait-for-lock` so parallel jobs queue on DVC's repository lock instead of
# failing. Pushing is a config switch (on in the embedded default: its remote is a local dir).
# Before tracking, temp files left by a killed writer (`.<name>.*.tmp`, see atvprune/io.py)
# are removed: every job writing into the artefact is an input here, so none is running,
# and DVC would otherwise hash the debris into the artefact.


rule dvc_track:
    input:
        dvc_inputs,
    output:
        "{artefact}.dvc",
    log:
        "logs/dvc_track/{artefact}.log",
    wildcard_constraints:
        artefact="(data|results)/.+",
    localrule: True
    conda:
        "../envs/versioning.yaml"
    params:
        push=lambda wc, output: (
            f"&& dvc --wait-for-lock push {output}"
            if config.get("dvc", {}).get("push", False)
            else ""
        ),
    shell:
        "(find {wildcards.artefact} -name '.*.tmp' -prune -exec rm -rf {{}} + "
        "&& dvc --wait-for-lock add {wildcards.artefact} {params.push}) > {log} 2>&1"
