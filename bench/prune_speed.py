"""Pruning speed benchmark (not a test): wall time per method on the mini model and on
a larger random-init LLaVA of the same family, plus ATV/Wanda and SparseGPT/Wanda.

Usage (after the embedded default has run once):
    python bench/prune_speed.py [--model data/models/tiny-llava]
        [--pool data/calib/tiny-llava/sharegpt4v] [--repeats 3]
"""

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from atvprune.calibration import capture, load_pool
from atvprune.engine import SparsityPattern, prune_model
from atvprune.models import get_adapter
from atvprune.pruners import build_pruner
from atvprune.world.tiny_llava import TinyLlavaSpec, build_model

METHODS = {
    "magnitude": {"method": "magnitude"},
    "wanda": {"method": "wanda"},
    "atv": {"method": "atv", "alpha": 1.0},
    "sparsegpt": {"method": "sparsegpt"},
    "tamp": {"method": "tamp"},
    "tamp_das": {"method": "tamp_das"},
}


def time_methods(model, adapter, pool, repeats: int) -> dict[str, float]:
    times = {}
    for name, spec in METHODS.items():
        runs = []
        for _ in range(repeats):
            work = copy.deepcopy(model)
            started = time.perf_counter()
            samples = capture(work, adapter, pool)
            pruner = build_pruner(spec, adapter=adapter)
            prune_model(
                work,
                adapter,
                samples,
                pruner,
                SparsityPattern.parse("0.5"),
                progress=False,
            )
            runs.append(time.perf_counter() - started)
        times[name] = statistics.median(runs)
    return times


def report(label: str, n_params: int, times: dict[str, float]) -> None:
    print(f"\n{label} ({n_params / 1e6:.2f} M parameters)")
    for name, seconds in times.items():
        print(f"  {name:10s} {seconds:8.3f} s")
    print(f"  ATV/Wanda       {times['atv'] / times['wanda']:.2f}x")
    print(f"  SparseGPT/Wanda {times['sparsegpt'] / times['wanda']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/models/tiny-llava")
    parser.add_argument("--pool", default="data/calib/tiny-llava/sharegpt4v")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    adapter = get_adapter("llava")
    model, processor = adapter.load(args.model)
    pool = load_pool(Path(args.pool))
    count = sum(p.numel() for p in model.parameters())
    report("mini model", count, time_methods(model, adapter, pool, args.repeats))
    wide = TinyLlavaSpec(
        **{
            **model.config.tiny_llava_spec,
            "text_hidden": 512,
            "text_intermediate": 1376,
            "text_heads": 8,
            "text_kv_heads": 8,
        }
    )
    larger = build_model(processor.tokenizer, wide, seed=0).eval()
    count = sum(p.numel() for p in larger.parameters())
    report("larger random-init LLaVA", count, time_methods(larger, adapter, pool, 1))


if __name__ == "__main__":
    main()
