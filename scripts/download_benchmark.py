"""Rule download_benchmark: the evaluated split of one lmms-eval benchmark at its pinned
revision into data/raw/benchmarks/<name> (the layout the evaluator's local loader
reads)."""

import argparse
import json

from atvprune.hub import download_benchmark
from atvprune.runlog import log_to


def main(name, source, out_dir, log_path=None) -> None:
    with log_to(log_path) as log:
        provenance = download_benchmark(name, source, out_dir)
        log.info("benchmark %s: %s", name, provenance["rows"])


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(sm.wildcards.benchmark, sm.params.source, sm.output[0], sm.log[0])
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("out_dir")
    parser.add_argument("--source", required=True, help="JSON of benchmarks.<name>")
    args = parser.parse_args()
    main(args.name, json.loads(args.source), args.out_dir)
