"""Rule prune: one (model, method, sparsity pattern) run of the layer-wise engine.
Output: a delta checkpoint over the base model (packed masks, or sparse values for
methods that update weights; see atvprune/checkpoint.py), `prune_stats.json` and
`provenance.json`."""

import argparse
import json
from pathlib import Path

from atvprune.calibration import capture, load_pool
from atvprune.checkpoint import save_pruned
from atvprune.engine import SparsityPattern, prune_model
from atvprune.io import dumps, environment, git_commit, set_seed, sha256_dir
from atvprune.models import get_adapter
from atvprune.pruners import build_pruner
from atvprune.runlog import log_to
from atvprune.telemetry import peak_memory_mb


def main(
    model_dir,
    pool_dir,
    out_dir,
    model_spec,
    method_spec,
    pattern_text,
    n_samples,
    seed,
    threads=1,
    log_path=None,
    run_name=None,
) -> None:
    with log_to(log_path) as log:
        set_seed(seed, threads)
        pattern = SparsityPattern.parse(pattern_text)
        adapter = get_adapter(model_spec["family"])
        pruner = build_pruner(method_spec, seed=seed, adapter=adapter)
        dtype = model_spec.get("dtype", "float32")
        model, _ = adapter.load(model_dir, dtype)
        samples = []
        if pruner.needs_calibration:
            samples = capture(
                model,
                adapter,
                load_pool(Path(pool_dir), expected=n_samples)[:n_samples],
            )
        stats = prune_model(model, adapter, samples, pruner, pattern)
        stats.update(
            {
                "model": Path(model_dir).name,
                "run": run_name or Path(out_dir).name,
                "method_spec": method_spec,
                "peak_memory_mb": peak_memory_mb(),
            }
        )
        log.info(
            "overall sparsity %.4f in %.2fs",
            stats["overall_sparsity"],
            stats["wall_time_s"],
        )
        provenance = {
            "base_model": str(model_dir),
            "base_model_sha256": sha256_dir(Path(model_dir)),
            "calibration_pool": str(pool_dir),
            "calibration_pool_sha256": json.loads(
                (Path(pool_dir) / "manifest.json").read_text()
            )["pool_sha256"],
            "model_spec": model_spec,
            "method": method_spec,
            "pattern": pattern.label,
            "seed": seed,
            "git_commit": git_commit(),
            "environment": environment(),
        }
        base_model, _ = adapter.load(model_dir, dtype)
        manifest = save_pruned(
            model,
            base_model,
            model_dir,
            out_dir,
            dtype,
            model_spec["family"],
            {"prune_stats.json": dumps(stats), "provenance.json": dumps(provenance)},
        )
        log.info(
            "checkpoint: %d bytes stored vs %d dense (%s)",
            manifest["bytes"]["stored"],
            manifest["bytes"]["dense"],
            ", ".join(sorted(set(manifest["tensors"].values()))),
        )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(
        sm.input.model,
        sm.input.pool,
        sm.output[0],
        sm.params.model_spec,
        sm.params.method_spec,
        sm.params.pattern,
        sm.params.n_samples,
        sm.params.seed,
        sm.threads,
        sm.log[0],
        run_name=f"{sm.wildcards.method}_s{sm.wildcards.pattern}",
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("pool_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--model-spec", default='{"family": "llava"}')
    parser.add_argument("--method", required=True, help='JSON, e.g. {"method": "atv"}')
    parser.add_argument("--pattern", required=True, help="e.g. 0.5 or 2:4")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(
        args.model_dir,
        args.pool_dir,
        args.out_dir,
        json.loads(args.model_spec),
        json.loads(args.method),
        args.pattern,
        args.n_samples,
        args.seed,
    )
