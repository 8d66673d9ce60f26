"""Model adapters: one per architecture family.

An adapter answers the four questions the pruning engine and the evaluator ask of a
model: where the decoder layers are, which positions are visual tokens, how to run one
decoder layer on cached inputs, and how to build prompts. Adding a model of a known
family is one config entry (`models.<name>.family` names a key below); a new family is
one adapter module registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from atvprune.models.base import ModelAdapter
from atvprune.models.llava import LlavaAdapter
from atvprune.models.llava_next import LlavaNextAdapter
from atvprune.models.qwen2_vl import Qwen2_5_VLAdapter, Qwen2VLAdapter

# Family key -> adapter factory. The `*_mrope` keys run Qwen's decoder layers with the
# true 3-D mRoPE positions during pruning instead of the official code's 1-D quirk
# (methods.md 7.6); they are an ablation, not the paper's setting.
ADAPTERS: dict[str, Callable[[], ModelAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_vl_mrope": partial(Qwen2VLAdapter, true_mrope=True),
    "qwen2_5_vl": Qwen2_5_VLAdapter,
    "qwen2_5_vl_mrope": partial(Qwen2_5_VLAdapter, true_mrope=True),
}


def get_adapter(family: str) -> ModelAdapter:
    """The adapter for a config `models.<name>.family` value."""
    try:
        return ADAPTERS[family]()
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise KeyError(
            f"unknown model family {family!r}; known families: {known}"
        ) from None


__all__ = ["ADAPTERS", "ModelAdapter", "get_adapter"]
