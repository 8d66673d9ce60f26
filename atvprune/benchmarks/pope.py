"""pope: POPE test (9,000 items: adversarial, popular and random settings together).

Per item: ``pred = generation.lower().strip()``; correct iff ``pred`` equals the gold
"yes"/"no" exactly. "Yes." or "Yes, there is ..." score 0 and count as neither yes nor
no for precision and recall (no first-word parsing, unlike LLaVA's POPE script).

Aggregates over all items (0-1):
    accuracy  = mean score
    precision = TP / (TP + FP),   recall = TP / (TP + FN),   F1 = 2PR / (P + R)
with TP = gold yes & pred "yes", FP = gold no & pred "yes", FN = gold yes & pred "no";
each is 0 when its denominator is 0. ``pope_yes_ratio`` is the share of *gold* "yes"
(lmms-eval's bug: it was meant to be the share of predicted yes; kept).
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
    name="pope",
    dataset_path="lmms-lab/POPE",
    dataset_name=None,
    split="test",
    max_new_tokens=128,
    # The YAML gives generation_kwargs without `until`, so lmms-eval adds "\n\n".
    until=("\n\n",),
    # The paper's POPE number is labelled accuracy; F1 stays in the metrics.
    headline_metric="pope_accuracy",
    headline_scale=100.0,
    metrics=(
        "pope_accuracy",
        "pope_precision",
        "pope_recall",
        "pope_f1_score",
        "pope_yes_ratio",
    ),
    answer_field="answer",
)

POST_PROMPT = "\nAnswer the question using a single word or phrase."


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB."""
    return single_image(doc, TASK.name)


def prompt(doc: Mapping[str, Any]) -> str:
    """``question.strip() + POST_PROMPT``."""
    check_fields(doc, ["question"], TASK.name)
    return require_str(doc, "question", TASK.name).strip() + POST_PROMPT


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Record with ``"score"`` 1.0 iff the lowercased prediction is exactly the gold.

    ``"pred_label"`` is ``prediction.lower().strip()`` and ``"ground_truth"`` the
    lowercased gold; the aggregates use these two. ``"category"`` (the POPE setting)
    is kept when the doc has one. Both modes are identical; ``rng`` is unused.
    """
    check_mode(mode, TASK.name)
    check_fields(doc, ["question_id", "answer"], TASK.name)
    gold = require_str(doc, "answer", TASK.name).lower().strip()
    if gold not in ("yes", "no"):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} has gold answer {doc['answer']!r}, "
            "expected yes/no"
        )
    stripped = strip_prediction(prediction, doc, TASK.name)
    pred_label = stripped.lower().strip()
    return {
        "question_id": doc["question_id"],
        "category": doc.get("category"),
        "prediction": stripped,
        "pred_label": pred_label,
        "ground_truth": gold,
        "score": 1.0 if pred_label == gold else 0.0,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def pope_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The five lmms-eval POPE metrics over ``records`` (0-1)."""
    true_pos = false_pos = false_neg = gold_yes = gold_no = 0
    for record in records:
        pred, gold = record["pred_label"], record["ground_truth"]
        true_pos += gold == "yes" and pred == "yes"
        false_pos += gold == "no" and pred == "yes"
        false_neg += gold == "yes" and pred == "no"
        gold_yes += gold == "yes"
        gold_no += gold == "no"
    precision = _ratio(true_pos, true_pos + false_pos)
    recall = _ratio(true_pos, true_pos + false_neg)
    total_score = 0.0
    for record in records:
        total_score += record["score"]
    return {
        "pope_accuracy": total_score / len(records),
        "pope_precision": precision,
        "pope_recall": recall,
        "pope_f1_score": _ratio(2 * (precision * recall), precision + recall),
        "pope_yes_ratio": _ratio(gold_yes, gold_yes + gold_no),
    }


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """lmms-eval's pooled POPE metrics, plus ``"category_scores"``: the same five
    metrics per POPE setting (LLaVA-style tables average the per-setting F1)."""
    check_records(records, TASK.name)
    result: dict[str, Any] = pope_metrics(records)
    by_category: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("category") is not None:
            by_category.setdefault(record["category"], []).append(record)
    result["category_scores"] = {
        category: pope_metrics(group) for category, group in by_category.items()
    }
    return result
