"""Rule evaluate: one checkpoint on every configured benchmark (one model load). Writes,
per benchmark, the predictions (JSONL, one record per item, re-scorable) and the metric
JSON the table is built from."""

import argparse
import json
from pathlib import Path

from atvprune.benchmarks import get_benchmark
from atvprune.checkpoint import load_pruned
from atvprune.evaluate import evaluate, load_docs
from atvprune.io import (
    environment,
    git_commit,
    set_seed,
    sha256_dir,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)
from atvprune.models import get_adapter
from atvprune.provenance import dataset_identity
from atvprune.runlog import log_to


def main(
    checkpoint,
    sources,
    evaluation,
    model_spec,
    run_spec,
    out_dir,
    model_name,
    run_name,
    threads=1,
    log_path=None,
) -> None:
    """Evaluate one checkpoint on every benchmark of `sources` (name -> data source),
    loading the model once; writes <out_dir>/<benchmark>.jsonl and .json each."""
    with log_to(log_path) as log:
        set_seed(0, threads)
        adapter = get_adapter(model_spec["family"])
        # Every benchmark's docs are read (and checked) before the model is loaded.
        docs_of = {
            name: load_docs(get_benchmark(name), source)
            for name, source in sources.items()
        }
        model, processor, model_sha = load_pruned(
            checkpoint, adapter, model_spec.get("dtype", "float32")
        )
        shared = {
            "model": model_name,
            "run": run_name,
            "method": run_spec["method"],
            "pattern": run_spec["pattern"],
            "scoring_mode": evaluation["scoring_mode"],
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_dir(Path(checkpoint)),
            "model_state_sha256": model_sha,
            "git_commit": git_commit(),
            "environment": environment(),
        }
        for benchmark, docs in docs_of.items():
            bench = get_benchmark(benchmark)
            records, metrics = evaluate(
                model,
                processor,
                adapter,
                bench,
                docs,
                evaluation["batch_size"],
                evaluation["scoring_mode"],
            )
            predictions_path = Path(out_dir) / f"{benchmark}.jsonl"
            lines = "".join(
                json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                for r in records
            )
            write_text_atomic(predictions_path, lines)
            task = bench.TASK
            headline = metrics[task.headline_metric] * task.headline_scale
            write_json_atomic(
                Path(out_dir) / f"{benchmark}.json",
                {
                    **shared,
                    "benchmark": benchmark,
                    "n_items": len(records),
                    "metrics": metrics,
                    "headline_metric": task.headline_metric,
                    "headline_scale": task.headline_scale,
                    "headline": headline,
                    "dataset": dataset_identity(sources[benchmark]),
                    "predictions": str(predictions_path),
                    "predictions_sha256": sha256_file(predictions_path),
                },
            )
            log.info(
                "%s %s %s: %s = %.2f",
                model_name,
                run_name,
                benchmark,
                task.headline_metric,
                headline,
            )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(
        sm.input.checkpoint,
        sm.params.sources,
        sm.params.evaluation,
        sm.params.model_spec,
        sm.params.run_spec,
        sm.params.out_dir,
        sm.wildcards.model,
        sm.wildcards.run,
        sm.threads,
        sm.log[0],
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("benchmarks", nargs="+")
    parser.add_argument(
        "--local-root", help="directory holding save_to_disk copies, one per benchmark"
    )
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scoring-mode", default="lmms-eval-0.4")
    parser.add_argument("--family", default="llava")
    parser.add_argument("--out", default="eval_out")
    args = parser.parse_args()
    main(
        args.checkpoint,
        {
            name: {
                "local_path": (
                    str(Path(args.local_root) / name) if args.local_root else None
                ),
                "n_samples": args.n_samples,
            }
            for name in args.benchmarks
        },
        {"batch_size": args.batch_size, "scoring_mode": args.scoring_mode},
        {"family": args.family},
        {"method": "unknown", "pattern": "unknown"},
        Path(args.out),
        Path(args.checkpoint).name,
        "adhoc",
    )
