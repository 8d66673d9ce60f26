"""Rule evaluate: one (checkpoint, benchmark) pair. Writes the predictions (JSONL, one
record per item, re-scorable) and the metric JSON the table is built from."""

import argparse
import json
from pathlib import Path

from atvprune.benchmarks import get_benchmark
from atvprune.evaluate import evaluate, load_docs
from atvprune.io import set_seed, sha256_file, write_json_atomic, write_text_atomic
from atvprune.models import get_adapter
from atvprune.runlog import log_to


def main(
    checkpoint,
    benchmark,
    source,
    evaluation,
    model_spec,
    run_spec,
    metrics_path,
    predictions_path,
    model_name,
    run_name,
    threads=1,
    log_path=None,
) -> None:
    with log_to(log_path) as log:
        set_seed(0, threads)
        bench = get_benchmark(benchmark)
        docs = load_docs(bench, source)
        adapter = get_adapter(model_spec["family"])
        model, processor = adapter.load(checkpoint, model_spec.get("dtype", "float32"))
        mode = evaluation["scoring_mode"]
        records, metrics = evaluate(
            model, processor, adapter, bench, docs, evaluation["batch_size"], mode
        )
        lines = "".join(
            json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records
        )
        write_text_atomic(Path(predictions_path), lines)
        task = bench.TASK
        headline = metrics[task.headline_metric] * task.headline_scale
        write_json_atomic(
            Path(metrics_path),
            {
                "model": model_name,
                "run": run_name,
                "method": run_spec["method"],
                "pattern": run_spec["pattern"],
                "benchmark": benchmark,
                "n_items": len(records),
                "scoring_mode": mode,
                "metrics": metrics,
                "headline_metric": task.headline_metric,
                "headline_scale": task.headline_scale,
                "headline": headline,
                "checkpoint": str(checkpoint),
                "predictions": str(predictions_path),
                "predictions_sha256": sha256_file(Path(predictions_path)),
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
        sm.wildcards.benchmark,
        sm.params.source,
        sm.params.evaluation,
        sm.params.model_spec,
        sm.params.run_spec,
        sm.output.metrics,
        sm.output.predictions,
        sm.wildcards.model,
        sm.wildcards.run,
        sm.threads,
        sm.log[0],
    )
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("benchmark")
    parser.add_argument("--local-path", help="save_to_disk copy of the benchmark")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scoring-mode", default="lmms-eval-0.4")
    parser.add_argument("--family", default="llava")
    parser.add_argument("--out", default="eval_out")
    args = parser.parse_args()
    out = Path(args.out)
    main(
        args.checkpoint,
        args.benchmark,
        {"local_path": args.local_path, "n_samples": args.n_samples},
        {"batch_size": args.batch_size, "scoring_mode": args.scoring_mode},
        {"family": args.family},
        {"method": "unknown", "pattern": "unknown"},
        out / f"{args.benchmark}.json",
        out / f"{args.benchmark}.jsonl",
        Path(args.checkpoint).name,
        "adhoc",
    )
