"""vizwiz_vqa_val: VizWiz-VQA val (4,319 questions), VQA accuracy.

Prompt: ``question.capitalize()`` (Python lowercases everything after the first
character: "iPhone" -> "iphone"), then the 'Unanswerable' post-prompt. The answer
"unanswerable" gets no special treatment: it is an ordinary gold string.
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
    name="vizwiz_vqa_val",
    dataset_path="lmms-lab/VizWiz-VQA",
    dataset_name=None,
    split="val",
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
    """``question.capitalize() + POST_PROMPT`` (the capitalize() quirk is kept)."""
    check_fields(doc, ["question"], TASK.name)
    return require_str(doc, "question", TASK.name).capitalize() + POST_PROMPT


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
