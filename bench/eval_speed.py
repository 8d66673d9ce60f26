"""Evaluation speed benchmark (not a test): batched greedy generation (left padding, KV
cache; what the evaluate rule runs) against batch size 1, on the mini benchmarks, with
the predictions of both compared item by item.

Uses the trained mini model and world when present (after the embedded default has run),
else builds a smoke-size random-init model and a small world in a temporary directory.

Usage:
    python bench/eval_speed.py [--model data/models/tiny-llava] [--world data/world]
        [--benchmarks pope gqa ...] [--items 60] [--batch-size 32] [--threads 1]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from atvprune.benchmarks import BENCHMARKS
from atvprune.evaluate import evaluate, load_docs
from atvprune.models import get_adapter

# The smoke config's model and world sizes (config/smoke.yaml), for the fallback.
SMOKE_SIZES = {
    "eval_items": 60,
    "train_items": 20,
    "train_conversations": 8,
    "calib_conversations": 8,
}


def smoke_model_and_world(root: Path):
    """A random-init smoke-size model and a freshly generated world."""
    from atvprune.world.build import build_world
    from atvprune.world.tiny_llava import (
        TinyLlavaSpec,
        build_model,
        build_processor,
        build_tokenizer,
    )

    world = root / "world"
    build_world(world, seed=7, sizes=SMOKE_SIZES)
    spec = TinyLlavaSpec(
        image_size=48,
        patch_size=8,
        vision_hidden=32,
        vision_layers=1,
        vision_heads=2,
        text_hidden=64,
        text_layers=2,
        text_heads=2,
        text_kv_heads=2,
        text_intermediate=128,
    )
    words = "yes no a b c d red green blue circle square top left right the is"
    tokenizer = build_tokenizer([words])
    processor = build_processor(tokenizer, spec)
    return build_model(tokenizer, spec, seed=0).eval(), processor, world


def timed(model, processor, adapter, bench, docs, batch_size: int, repeats: int):
    """(median CPU seconds, raw predictions) of evaluating `docs` at `batch_size`.

    CPU time of this process, not wall time: on a shared machine the wall clock mostly
    measures the other tenants. With --threads 1 the two agree on an idle machine."""
    seconds, predictions = [], None
    for _ in range(repeats):
        started = time.process_time()
        records, _ = evaluate(
            model,
            processor,
            adapter,
            bench,
            docs,
            batch_size,
            "lmms-eval-0.4",
            progress=False,
        )
        seconds.append(time.process_time() - started)
        predictions = [r["raw_prediction"] for r in records]
    return statistics.median(seconds), predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/models/tiny-llava")
    parser.add_argument("--world", default="data/world")
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    parser.add_argument("--items", type=int, default=60, help="items per benchmark")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    adapter = get_adapter("llava")
    scratch = tempfile.TemporaryDirectory()
    if Path(args.model).exists() and Path(args.world).exists():
        model, processor = adapter.load(args.model)
        world, label = Path(args.world), f"trained model {args.model}"
    else:
        model, processor, world = smoke_model_and_world(Path(scratch.name))
        label = "random-init smoke-size model (no trained model found)"
    model.eval()
    print(f"{label}; {args.threads} thread(s); batch {args.batch_size} vs 1")
    print("samples per CPU-second of this process (see timed())")
    print(
        f"{'benchmark':16s} {'items':>5s} {'b=1 /s':>8s} {'batched /s':>10s} "
        f"{'speed-up':>8s}  identical"
    )
    totals = {"one": 0.0, "many": 0.0, "items": 0}
    all_equal = True
    for name in args.benchmarks:
        bench = BENCHMARKS[name]
        source = {"local_path": str(world / name)}
        docs = load_docs(bench, source)
        docs = docs.select(range(min(args.items, len(docs))))
        one, one_pred = timed(model, processor, adapter, bench, docs, 1, args.repeats)
        many, many_pred = timed(
            model, processor, adapter, bench, docs, args.batch_size, args.repeats
        )
        same = one_pred == many_pred
        all_equal &= same
        totals["one"] += one
        totals["many"] += many
        totals["items"] += len(docs)
        print(
            f"{name:16s} {len(docs):5d} {len(docs) / one:8.1f} "
            f"{len(docs) / many:10.1f} {one / many:7.1f}x  {same}"
        )
    n = totals["items"]
    print(
        f"{'all':16s} {n:5d} {n / totals['one']:8.1f} {n / totals['many']:10.1f} "
        f"{totals['one'] / totals['many']:7.1f}x  {all_equal}"
    )
    scratch.cleanup()
    if not all_equal:
        raise SystemExit("batched predictions differ from batch-1 predictions")


if __name__ == "__main__":
    main()
