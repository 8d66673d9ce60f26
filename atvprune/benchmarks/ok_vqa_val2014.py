"""ok_vqa_val2014: OK-VQA val2014 (5,046 questions), VQA accuracy.

Prompt: the question verbatim, then a post-prompt copied from VizWiz that mentions
'Unanswerable' (OK-VQA has no unanswerable questions, so that answer always scores 0).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from atvprune.benchmarks import vqa
from atvprune.benchmarks.base import (
    BenchmarkSpec,
    check_fields,
    require_str,
    single_image,
)

TASK = BenchmarkSpec(
    name="ok_vqa_val2014",
    dataset_path="lmms-lab/OK-VQA",
    dataset_name=None,
    split="val2014",
    # The task YAML sets no max_new_tokens; the llava wrapper default would be 1024.
    # We use 128 (the qwen2_vl wrapper default, what the paper's runs used).
    max_new_tokens=128,
    until=("ASSISTANT:",),
    headline_metric="exact_match",
    headline_scale=100.0,
    metrics=("exact_match",),
    answer_field="answers",
)

POST_PROMPT = (
    "\nWhen the provided information is insufficient, respond with 'Unanswerable'."
    "\nAnswer the question using a single word or phrase."
)


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB."""
    return single_image(doc, TASK.name)


def prompt(doc: Mapping[str, Any]) -> str:
    """``"{question}" + POST_PROMPT`` (question used verbatim)."""
    check_fields(doc, ["question"], TASK.name)
    return require_str(doc, "question", TASK.name) + POST_PROMPT


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """VQA accuracy record (see ``vqa.score``); both modes are identical."""
    return vqa.score(doc, prediction, mode, rng, task=TASK.name)


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``exact_match`` = mean VQA accuracy (0-1)."""
    return vqa.aggregate(records)
