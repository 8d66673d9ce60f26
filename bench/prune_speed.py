"""Pruning speed benchmark (not a test): CPU time (one thread) per method on the mini
model and on a larger random-init LLaVA of the same family, plus ATV/Wanda and
SparseGPT/Wanda and the engine against the plain reference loop.

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

from atvprune import methods
from atvprune.calibration import capture, load_pool
from atvprune.engine import SparsityPattern, find_linears, prune_model
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
    """Median wall time of the engine's layer loop per method (capture excluded), plus
    the plain reference loop (`reference_prune`) for Wanda and ATV."""
    times = {}
    runs_of = {
        name: []
        for name in [*METHODS, "wanda (reference loop)", "atv (reference loop)"]
    }
    for _ in range(repeats):
        for name, spec in METHODS.items():
            work = copy.deepcopy(model)
            samples = capture(work, adapter, pool)
            pruner = build_pruner(spec, adapter=adapter)
            started = time.process_time()
            prune_model(
                work,
                adapter,
                samples,
                pruner,
                SparsityPattern.parse("0.5"),
                progress=False,
            )
            runs_of[name].append(time.process_time() - started)
        for name, alpha in (("wanda", None), ("atv", 1.0)):
            work = copy.deepcopy(model)
            samples = capture(work, adapter, pool)
            started = time.process_time()
            reference_prune(work, adapter, samples, 0.5, alpha)
            runs_of[f"{name} (reference loop)"].append(time.process_time() - started)
    for name, runs in runs_of.items():
        times[name] = statistics.median(runs)
    return times


def reference_prune(model, adapter, samples, sparsity, alpha=None) -> None:
    """The public code's per-layer loop written plainly (methods.md 1.3, 6): a dense
    drift pass (ATV only), a dense hook pass that stores every Linear input, masks,
    then a pruned pass for the next layer's inputs. alpha None = Wanda."""
    layers = adapter.decoder_layers(model)
    inputs = [s.hidden for s in samples]
    masks = [s.image_mask for s in samples]
    kwargs = [s.layer_kwargs for s in samples]
    with torch.no_grad():
        for layer in layers:
            index = None
            if alpha is not None:
                outputs = [
                    adapter.run_layer(layer, h, kw)
                    for h, kw in zip(inputs, kwargs, strict=True)
                ]
                _, _, index = methods.atv_select(
                    [h[0] for h in inputs], [o[0] for o in outputs], masks, alpha
                )
            linears = find_linears(layer)
            seen = {name: [] for name in linears}
            handles = [
                module.register_forward_hook(
                    lambda m, a, o, n=name, seen=seen: seen[n].append(a[0][0].clone())
                )
                for name, module in linears.items()
            ]
            for h, kw in zip(inputs, kwargs, strict=True):
                adapter.run_layer(layer, h, kw)
            for handle in handles:
                handle.remove()
            for name, linear in linears.items():
                tokens = seen[name]
                if index is not None:
                    tokens = [
                        methods.calibration_tokens(x, masks[j], index[j])
                        for j, x in enumerate(tokens)
                    ]
                scaler = methods.scaler_row(tokens)
                mask = methods.wanda_mask(linear.weight.data, scaler, sparsity)
                linear.weight.data[mask] = 0
            inputs = [
                adapter.run_layer(layer, h, kw)
                for h, kw in zip(inputs, kwargs, strict=True)
            ]


def report(label: str, n_params: int, times: dict[str, float]) -> None:
    print(
        f"\n{label} ({n_params / 1e6:.2f} M parameters; "
        "layer loop, capture excluded; CPU s)"
    )
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds:8.3f} s")
    print(f"  ATV/Wanda                {times['atv'] / times['wanda']:.2f}x")
    print(f"  SparseGPT/Wanda          {times['sparsegpt'] / times['wanda']:.2f}x")
    for name in ("wanda", "atv"):
        speedup = times[f"{name} (reference loop)"] / times[name]
        print(f"  {name} reference loop / engine {speedup:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/models/tiny-llava")
    parser.add_argument("--pool", default="data/calib/tiny-llava/sharegpt4v")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    # CPU time of one thread: comparable between methods on a shared machine.
    torch.set_num_threads(1)
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
