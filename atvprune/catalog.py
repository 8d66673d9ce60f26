"""What a config may name, kept free of torch, transformers and datasets.

The Snakefile checks the config (`atvprune.config_checks`) every time Snakemake starts,
including dry runs and twice inside every cluster job; importing the model code there
would cost seconds per start. So the names and parameters a config may use live here,
and the heavy registries agree with them:

- `MODEL_FAMILIES`: keys of `atvprune.models.ADAPTERS` (tests/test_light_imports.py
  checks they are equal);
- `METHOD_PARAMS` and `method_params`: the keys of `atvprune.pruners.PRUNERS` and the
  parameters each accepts; `pruners.build_pruner` validates with `method_params`, so
  the config check and the pruning job refuse exactly the same entries;
- `TinyLlavaSpec`: the mini model's architecture fields (`models.<name>.architecture`),
  re-exported by `atvprune.world.tiny_llava`, which builds the model from it.

Benchmark names need no copy here: `atvprune.benchmarks` imports without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# In the order of atvprune.models.ADAPTERS.
MODEL_FAMILIES = (
    "llava",
    "llava_next",
    "qwen2_vl",
    "qwen2_vl_mrope",
    "qwen2_5_vl",
    "qwen2_5_vl_mrope",
)


class MethodParams(NamedTuple):
    """The parameters one method accepts, and how an error names them."""

    owner: str  # "ATV" -> "unknown ATV parameter(s) ..."
    names: frozenset[str]


NO_PARAMS = MethodParams("", frozenset())
ATV_PARAMS = MethodParams("ATV", frozenset({"alpha", "ratio", "drift_dtype"}))
SPARSEGPT_PARAMS = MethodParams("SparseGPT", frozenset({"blocksize", "percdamp"}))

# Method key -> accepted parameters, in the order of atvprune.pruners.PRUNERS (error
# messages list the known methods in this order).
METHOD_PARAMS: dict[str, MethodParams] = {
    "magnitude": NO_PARAMS,
    "magnitude_row": NO_PARAMS,
    "wanda": NO_PARAMS,
    "sparsegpt": SPARSEGPT_PARAMS,
    "tamp": NO_PARAMS,
    "tamp_das": NO_PARAMS,
    "atv": ATV_PARAMS,
    "atv_drift_fixed": ATV_PARAMS,
    "atv_random_fixed": ATV_PARAMS,
    "atv_text_only": ATV_PARAMS,
    "atv_visual_only": ATV_PARAMS,
}


def method_params(spec: dict) -> tuple[str, dict]:
    """Split one method entry {"method": key, **params} into (key, params).

    KeyError naming the unknown method or parameter(s). Parameter values are not
    checked here: the config schema types them, the method code checks ranges."""
    params = dict(spec)
    key = params.pop("method", None)
    if key not in METHOD_PARAMS:
        raise KeyError(
            f"unknown method {key!r}; known methods: {', '.join(METHOD_PARAMS)}"
        )
    accepted = METHOD_PARAMS[key]
    unknown = set(params) - accepted.names
    if unknown and not accepted.names:
        raise KeyError(f"method {key!r} takes no parameters, got {sorted(params)}")
    if unknown:
        raise KeyError(
            f"unknown {accepted.owner} parameter(s) {sorted(unknown)}; "
            f"allowed: {sorted(accepted.names)}"
        )
    return key, params


@dataclass(frozen=True)
class TinyLlavaSpec:
    """Architecture of the mini model (the `model` section of the embedded config)."""

    image_size: int = 48
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 96
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 4
    text_intermediate: int = 256
    max_positions: int = 512
    vision_init_factor: float = 1.0
    text_init_range: float = 0.02

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2
