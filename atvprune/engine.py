"""The one sequential layer-wise pruning loop every method plugs into (methods.md 1).

For each decoder layer i:
1. optional pre-pass on the *dense* layer (ATV: visual drift; TAMP: attention),
2. one dense pass with forward hooks on the layer's Linear modules: each hook feeds
   the method's statistic for that Linear (all Linears of a layer share this pass),
3. masks (and, for SparseGPT, updated weights) from the statistics,
4. a pass of the *pruned* layer whose outputs become layer i+1's inputs, so errors
   propagate exactly as in the reference code.

Only one layer's statistics live at a time; the calibration hidden states are the other
memory cost. Nothing here knows which method runs: see `atvprune.pruners`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from atvprune.models.base import CapturedSample, ModelAdapter
from atvprune.patterns import SparsityPattern  # noqa: F401 (engine API, re-exported)


@dataclass
class LayerContext:
    """What a method may look at for one layer (all per-sample lists share indices)."""

    index: int
    layer: torch.nn.Module
    inputs: list[torch.Tensor]  # (1, L, d) per sample: outputs of the pruned layers < i
    image_masks: list[torch.Tensor]  # (L,) bool per sample
    layer_kwargs: list[dict]
    run_dense: Callable[[torch.Tensor, dict], torch.Tensor]  # runs the *dense* layer i
    attention_scores: list[torch.Tensor] | None = None
    record: dict = field(default_factory=dict)  # per-layer numbers for prune_stats.json


def prefix_inputs(
    hidden: torch.Tensor, layer_kwargs: dict, length: int
) -> tuple[torch.Tensor, dict]:
    """The first `length` tokens of one sample's layer inputs (batch 1, no padding).

    Under causal attention a token's layer output depends only on the tokens up to it,
    so running the layer on this prefix gives the same outputs for those tokens (ATV's
    drift only needs the visual ones, which sit early in every chat template). Sliced:
    the sequence axis of position ids, cache positions, rotary cos/sin and a 4-D mask.
    """
    sliced = {}
    for key, value in layer_kwargs.items():
        if value is None:
            sliced[key] = None
        elif key == "attention_mask":
            sliced[key] = value[..., :length, :length]
        elif key == "position_embeddings":
            sliced[key] = tuple(part[..., :length, :] for part in value)
        elif key in ("position_ids", "cache_position"):
            sliced[key] = value[..., :length]
        else:
            raise KeyError(f"prefix_inputs: no slicing rule for layer input {key!r}")
    return hidden[:, :length], sliced


def find_linears(layer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every nn.Linear (exact type) inside a decoder layer, in definition order."""
    return {
        name: module
        for name, module in layer.named_modules()
        if type(module) is torch.nn.Linear
    }


def mask_digest(mask: torch.Tensor) -> str:
    """sha256 of a bool mask packed to bits (row-major), for provenance."""
    packed = np.packbits(mask.cpu().numpy().reshape(-1))
    return hashlib.sha256(packed.tobytes()).hexdigest()


def prune_model(
    model,
    adapter: ModelAdapter,
    samples: Sequence[CapturedSample],
    pruner,
    pattern: SparsityPattern,
    progress: bool = True,
) -> dict:
    """Prune the language model's decoder Linears in place; return prune statistics."""
    started = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    language_model = adapter.language_model(model)
    use_cache = getattr(language_model.config, "use_cache", None)
    language_model.config.use_cache = False
    layers = adapter.decoder_layers(model)
    inputs = [s.hidden for s in samples]
    masks = [s.image_mask for s in samples]
    kwargs = [s.layer_kwargs for s in samples]
    if pruner.needs_calibration and not samples:
        raise ValueError(f"method {pruner.name!r} needs calibration samples, got none")
    with torch.no_grad():
        whole_model = pruner.prepare(
            layers,
            samples,
            lambda layer, h, kw: adapter.run_layer(layer, h, kw),
            pattern,
        )
    records = []
    mask_hashes = {}
    zeros_all = numel_all = 0
    bar = tqdm(
        range(len(layers)),
        desc=f"prune {pruner.name} {pattern.label}",
        unit="layer",
        disable=not progress,
    )
    with torch.no_grad():
        for i in bar:
            layer = layers[i]
            linears = find_linears(layer)
            ctx = LayerContext(
                index=i,
                layer=layer,
                inputs=inputs,
                image_masks=masks,
                layer_kwargs=kwargs,
                run_dense=lambda h, kw, layer=layer: adapter.run_layer(layer, h, kw),
            )
            pruner.start_layer(ctx)
            statistics = {
                name: pruner.new_statistic(name, lin) for name, lin in linears.items()
            }
            if pruner.needs_calibration:
                _dense_statistics_pass(ctx, linears, statistics)
            layer_record = {"layer": i, **ctx.record, "linears": {}}
            pruned = total = 0
            for name, linear in linears.items():
                mask = pruner.prune(name, linear, statistics[name], pattern)
                linear.weight.data[mask] = 0
                n_zero = int((linear.weight.data == 0).sum())
                pruned += n_zero
                total += linear.weight.numel()
                layer_record["linears"][name] = round(n_zero / linear.weight.numel(), 6)
                mask_hashes[f"layer{i}.{name}"] = mask_digest(mask)
            layer_record["sparsity"] = round(pruned / total, 6)
            zeros_all += pruned
            numel_all += total
            del statistics
            if pruner.needs_calibration and i + 1 < len(layers):
                inputs = [
                    adapter.run_layer(layer, h, kw)
                    for h, kw in zip(inputs, kwargs, strict=True)
                ]
                _check_finite(inputs, i)
            records.append(layer_record)
    language_model.config.use_cache = use_cache
    return {
        "method": pruner.name,
        "pattern": pattern.label,
        "n_calibration_samples": len(samples),
        **whole_model,
        "layers": records,
        "overall_sparsity": round(zeros_all / numel_all, 6) if numel_all else 0.0,
        "mask_sha256": mask_hashes,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }


def _dense_statistics_pass(ctx: LayerContext, linears, statistics) -> None:
    """Run the still-dense layer on every sample; hooks feed each Linear's statistic."""
    current = {"sample": 0}
    handles = []
    for name, linear in linears.items():

        def hook(module, args, output, name=name):
            statistics[name].add(current["sample"], args[0][0], output[0])

        handles.append(linear.register_forward_hook(hook))
    try:
        for j, (hidden, kw) in enumerate(
            zip(ctx.inputs, ctx.layer_kwargs, strict=True)
        ):
            current["sample"] = j
            ctx.run_dense(hidden, kw)
    finally:
        for handle in handles:
            handle.remove()


def _check_finite(inputs: list[torch.Tensor], layer_index: int) -> None:
    for j, hidden in enumerate(inputs):
        if not torch.isfinite(hidden).all():
            raise FloatingPointError(
                f"non-finite activations after pruned decoder layer {layer_index} "
                f"(calibration sample {j}); aborting instead of pruning on NaN/inf"
            )
