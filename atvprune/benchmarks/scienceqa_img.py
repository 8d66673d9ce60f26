"""scienceqa_img: ScienceQA-IMG test (2,017 questions), option-letter match.

Prompt: ["Context: {hint}\\n" if the hint is non-empty] + question + "\\n" + options
("A. x" lines) + the letter instruction. Lecture and solution are never shown.

Scoring modes (gold letter g = chr(ord("A") + answer), p = stripped generation):
- "lmms-eval-0.4" (July 2025 on: v0.3.5, v0.4, v0.5): correct if p.lower() == g.lower();
  otherwise, if len(p) >= 2, p[0] is uppercase and p[1] == ".", correct iff p[0] == g.
  So "B", "b", "B.", "B. cat", "B.C" score; "(B)", "B)", "b. cat", "B\\n..." do not.
- "original": exact letter only (any case), i.e. lmms-eval before 2025-07-04, which
  lowercased p before the "X." test so that rule never fired ("B." scores 0). This
  is the LLaVA/ScienceQA convention of a bare-letter answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from atvprune.benchmarks.base import (
    LMMS_EVAL_MODE,
    BenchmarkSpec,
    check_fields,
    check_mode,
    check_records,
    doc_label,
    mean,
    require_str,
    single_image,
    strip_prediction,
)

TASK = BenchmarkSpec(
    name="scienceqa_img",
    dataset_path="lmms-lab/ScienceQA",
    dataset_name="ScienceQA-IMG",
    split="test",
    max_new_tokens=16,
    # The YAML gives generation_kwargs without `until`, so lmms-eval adds "\n\n".
    until=("\n\n",),
    headline_metric="exact_match",
    headline_scale=100.0,
    metrics=("exact_match",),
    answer_field="answer",
)

POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def _choices(doc: Mapping[str, Any]) -> list[str]:
    choices = doc["choices"]
    if isinstance(choices, str) or not all(isinstance(c, str) for c in choices):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} field 'choices' must be a list of "
            f"strings, got {choices!r}"
        )
    return list(choices)


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB (every ScienceQA-IMG question has an image)."""
    return single_image(doc, TASK.name)


def prompt(doc: Mapping[str, Any]) -> str:
    """``[Context: {hint}\\n]{question}\\n{A. c1\\nB. c2...}`` + POST_PROMPT."""
    check_fields(doc, ["hint", "question", "choices"], TASK.name)
    hint = require_str(doc, "hint", TASK.name)
    question = require_str(doc, "question", TASK.name)
    options = "\n".join(
        f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(_choices(doc))
    )
    context = f"Context: {hint}\n" if hint else ""
    return f"{context}{question}\n{options}{POST_PROMPT}"


def gold_letter(doc: Mapping[str, Any]) -> str:
    """``chr(ord("A") + answer)``; ValueError if the index is not a valid choice."""
    check_fields(doc, ["choices", "answer"], TASK.name)
    answer = doc["answer"]
    n_choices = len(_choices(doc))
    if isinstance(answer, bool) or not isinstance(answer, int):
        try:
            answer = int(answer)  # numpy integers and the like
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{TASK.name}: doc {doc_label(doc)} answer {answer!r} is not an index"
            ) from error
    if not 0 <= answer < n_choices:
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} answer index {answer} is outside "
            f"its {n_choices} choices"
        )
    return chr(ord("A") + answer)


def is_correct(prediction: str, gold: str, mode: str = LMMS_EVAL_MODE) -> bool:
    """The matching rule of ``mode`` on an already stripped prediction."""
    check_mode(mode, TASK.name)
    if prediction.lower() == gold.lower():
        return True
    if mode == LMMS_EVAL_MODE and len(prediction) >= 2:
        if prediction[0].isupper() and prediction[1] == ".":
            return prediction[0].lower() == gold.lower()
    return False


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Record with ``"score"`` 1.0/0.0 under ``mode`` (see the module docstring);
    ``rng`` is unused."""
    check_mode(mode, TASK.name)
    gold = gold_letter(doc)
    stripped = strip_prediction(prediction, doc, TASK.name)
    return {
        "prediction": stripped,
        "answer": gold,
        "score": 1.0 if is_correct(stripped, gold, mode) else 0.0,
    }


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``exact_match`` = mean score (0-1)."""
    check_records(records, TASK.name)
    return {"exact_match": mean([record["score"] for record in records])}
