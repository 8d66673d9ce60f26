"""Rule world: generate the mini world (nine benchmark formats, training conversations
and the calibration source) from one seed, in the real datasets' schemas."""

import argparse
import json
from pathlib import Path

from atvprune.io import atomic_dir
from atvprune.runlog import log_to
from atvprune.world.build import build_world


def main(out_dir: str, seed: int, sizes: dict, log_path=None) -> None:
    with log_to(log_path) as log:
        with atomic_dir(Path(out_dir)) as tmp:
            manifest = build_world(tmp, seed, sizes)
        log.info("world written: %s", json.dumps(manifest["sizes"], sort_keys=True))


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(sm.output[0], sm.params.seed, dict(sm.params.sizes), sm.log[0])
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--sizes", default=None, help="JSON of world.sizes")
    args = parser.parse_args()
    main(args.out_dir, args.seed, json.loads(args.sizes) if args.sizes else None)
