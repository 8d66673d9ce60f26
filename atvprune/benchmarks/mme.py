"""mme: MME test (2,374 yes/no questions, 2 per image, 14 categories).

Prompt: the question with " Please answer yes or no." deleted, then the short-answer
post-prompt (lmms-eval deletes the sentence whenever its post-prompt is non-empty).

Parse (from Otter, see ``parse_yes_no``) then score 1 iff the label equals the gold.

Aggregation, separately for perception (10 categories) and cognition (4):
    per image (question_id): acc = 100 * correct / 2,  acc+ = 100 if both correct
    category score = mean over its images of (acc + acc+)          (0-200)
    side score     = sum of its category scores  (perception 0-2000, cognition 0-800)
Every image must have exactly 2 questions (lmms-eval asserts this; ValueError here).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from atvprune.benchmarks.base import (
    BenchmarkSpec,
    check_fields,
    check_mode,
    check_records,
    doc_label,
    require_str,
    single_image,
    strip_prediction,
)

TASK = BenchmarkSpec(
    name="mme",
    dataset_path="lmms-lab/MME",
    dataset_name=None,
    split="test",
    max_new_tokens=16,
    # The YAML gives generation_kwargs without `until`, so lmms-eval adds "\n\n".
    until=("\n\n",),
    headline_metric="mme_perception_score",
    headline_scale=1.0,
    metrics=("mme_perception_score", "mme_cognition_score"),
    answer_field="answer",
)

PERCEPTION_CATEGORIES = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene",
    "landmark", "artwork", "OCR",
)  # fmt: skip
COGNITION_CATEGORIES = (
    "commonsense_reasoning",
    "numerical_calculation",
    "text_translation",
    "code_reasoning",
)
YES_NO_SENTENCE = " Please answer yes or no."
POST_PROMPT = "\nAnswer the question using a single word or phrase."


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB."""
    return single_image(doc, TASK.name)


def prompt(doc: Mapping[str, Any]) -> str:
    """``question.strip()`` without YES_NO_SENTENCE, then POST_PROMPT."""
    check_fields(doc, ["question"], TASK.name)
    question = require_str(doc, "question", TASK.name).strip()
    return question.replace(YES_NO_SENTENCE, "") + POST_PROMPT


def parse_yes_no(prediction: str) -> str:
    """Otter's MME parse: "yes", "no" or "other".

    s = prediction.lower().strip() with every "." removed. "yes"/"no" -> itself; a
    1-char s: "y" -> yes, "n" -> no, else other; otherwise look only at s[:4]:
    contains "yes" -> yes, else contains "no" -> no, else other. So "Not sure",
    "None", "Nope", "know" -> no; "The answer is yes" -> other; "" -> other.
    """
    text = prediction.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def side_of(category: str) -> str:
    """ "perception" or "cognition"; ValueError for a category MME does not have.

    (lmms-eval files every non-perception name under cognition; an unknown name
    is a data error, so it fails here instead.)
    """
    if category in PERCEPTION_CATEGORIES:
        return "perception"
    if category in COGNITION_CATEGORIES:
        return "cognition"
    raise ValueError(f"{TASK.name}: unknown MME category {category!r}")


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Record with ``"score"`` 1.0 iff parse_yes_no(prediction) equals the gold
    (lowercased, dots removed). Both modes are identical; ``rng`` is unused."""
    check_mode(mode, TASK.name)
    check_fields(doc, ["question_id", "answer", "category"], TASK.name)
    gold = require_str(doc, "answer", TASK.name).lower().strip().replace(".", "")
    if gold not in ("yes", "no"):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} has gold answer {doc['answer']!r}, "
            "expected yes/no"
        )
    category = require_str(doc, "category", TASK.name)
    stripped = strip_prediction(prediction, doc, TASK.name)
    label = parse_yes_no(stripped)
    return {
        "question_id": doc["question_id"],
        "category": category,
        "side": side_of(category),
        "prediction": stripped,
        "pred_label": label,
        "answer": gold,
        "score": 1.0 if label == gold else 0.0,
    }


def category_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """acc + acc+ per category (0-200), categories in order of first appearance."""
    scores_by_image: dict[str, dict[Any, list[float]]] = {}
    for record in records:
        images = scores_by_image.setdefault(record["category"], {})
        images.setdefault(record["question_id"], []).append(record["score"])
    result = {}
    for category, images in scores_by_image.items():
        total = 0.0
        for question_id, scores in images.items():
            if len(scores) != 2:
                raise ValueError(
                    f"{TASK.name}: image {question_id!r} of category {category!r} "
                    f"has {len(scores)} questions; MME needs exactly 2 per image"
                )
            acc = sum(scores) / len(scores) * 100.0
            acc_plus = (sum(scores) == 2) * 100.0
            total += acc_plus + acc
        result[category] = total / len(images)
    return result


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``mme_perception_score`` and ``mme_cognition_score`` (MME points), plus
    ``"category_scores"`` (acc + acc+ per category).

    Both totals are always present: a side with no categories in ``records`` is 0.0
    (lmms-eval would not report that metric at all).
    """
    check_records(records, TASK.name)
    per_category = category_scores(records)
    totals = {"perception": 0.0, "cognition": 0.0}
    for category, value in per_category.items():
        totals[side_of(category)] += value
    return {
        "mme_perception_score": totals["perception"],
        "mme_cognition_score": totals["cognition"],
        "category_scores": per_category,
    }
