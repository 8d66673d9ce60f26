"""Rule calibration_pool: draw N conversations with a fixed seed from the calibration
source and render them with the model's chat template (one sample each, no padding)."""

import argparse
import json
from pathlib import Path

import datasets

from atvprune.calibration import build_pool, save_pool, select_indices
from atvprune.io import set_seed
from atvprune.models import get_adapter
from atvprune.runlog import log_to


def main(
    model_dir, source_dir, out_dir, model_spec, calibration, log_path=None
) -> None:
    with log_to(log_path) as log:
        set_seed(calibration["seed"], threads=1)
        adapter = get_adapter(model_spec["family"])
        model, processor = adapter.load(model_dir, model_spec.get("dtype", "float32"))
        split = calibration.get("split", "calib")
        records = datasets.load_from_disk(str(Path(source_dir) / calibration["pool"]))[
            split
        ]
        index = select_indices(
            len(records), calibration["n_samples"], calibration["seed"]
        )
        pool = build_pool([records[i] for i in index], processor, adapter, model.config)
        save_pool(
            pool,
            Path(out_dir),
            {
                "source": str(source_dir),
                "pool": calibration["pool"],
                "split": split,
                "seed": calibration["seed"],
                "selected_rows": index,
            },
        )
        n_img = sum(int(s["image_mask"].sum()) for s in pool)
        n_all = sum(int(s["input_ids"].numel()) for s in pool)
        log.info(
            "pool of %d samples, %d tokens, %.1f%% visual",
            len(pool),
            n_all,
            100 * n_img / n_all,
        )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(
        sm.input.model,
        sm.input.source[0],
        sm.output[0],
        sm.params.model_spec,
        sm.params.calibration,
        sm.log[0],
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("source_dir", help="directory holding <pool>/ (save_to_disk)")
    parser.add_argument("out_dir")
    parser.add_argument("--model-spec", required=True, help="JSON of models.<name>")
    parser.add_argument(
        "--calibration", required=True, help="JSON of the calibration section"
    )
    args = parser.parse_args()
    main(
        args.model_dir,
        args.source_dir,
        args.out_dir,
        json.loads(args.model_spec),
        json.loads(args.calibration),
    )
