"""Model adapters: one per architecture family.

An adapter answers the four questions the pruning engine and the evaluator ask of a
model: where the decoder layers are, which positions are visual tokens, how to run one
decoder layer on cached inputs, and how to build prompts. Adding a model of a known
family is one config entry; a new family is one adapter module registered here.
"""

from __future__ import annotations

from atvprune.models.base import ModelAdapter
from atvprune.models.llava import LlavaAdapter

ADAPTERS: dict[str, type[ModelAdapter]] = {
    "llava": LlavaAdapter,
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
