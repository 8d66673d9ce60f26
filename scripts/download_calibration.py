"""Rule download_calibration: the ShareGPT4V rows of LLaVA-NeXT-Data (annotations of
the whole task range, images of the rows the configured seeds draw) into
data/raw/<pool>."""

import argparse
import json

from atvprune.hub import download_calibration
from atvprune.runlog import log_to


def main(calibration, seeds, out_dir, log_path=None) -> None:
    with log_to(log_path) as log:
        manifest = download_calibration(calibration, out_dir, seeds)
        log.info(
            "task %s rows %s, seeds %s",
            manifest["task"],
            manifest["task_range"],
            sorted(manifest["selected_rows"]),
        )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(sm.params.calibration, sm.params.seeds, sm.output[0], sm.log[0])
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--calibration", required=True, help="JSON of `calibration`")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    args = parser.parse_args()
    main(json.loads(args.calibration), args.seeds, args.out_dir)
