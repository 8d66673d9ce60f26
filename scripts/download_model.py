"""Rule download_model: snapshot `models.<name>` from the hub at its pinned revision
(or copy its `local_path`) into data/models/<name>."""

import argparse
import json

from atvprune.hub import download_model
from atvprune.runlog import log_to


def main(name, spec, out_dir, log_path=None) -> None:
    with log_to(log_path) as log:
        provenance = download_model(name, spec, out_dir)
        log.info("model %s: %d files", name, len(provenance["files"]))


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(sm.wildcards.model, sm.params.spec, sm.output[0], sm.log[0])
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("out_dir")
    parser.add_argument("--spec", required=True, help="JSON of models.<name>")
    args = parser.parse_args()
    main(args.name, json.loads(args.spec), args.out_dir)
