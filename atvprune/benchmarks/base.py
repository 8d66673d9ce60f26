"""Shared pieces of the benchmark modules: the task spec, field checks, image loading.

Every benchmark module (one per lmms-eval task) exposes the same five names:

- ``TASK``: a :class:`BenchmarkSpec` (dataset, split, generation settings, metrics);
- ``visuals(doc)``: the images shown to the model (lmms-eval ``doc_to_visual``);
- ``prompt(doc)``: the user text after the image, for the ``default`` prompt variant
  (lmms-eval ``doc_to_text``);
- ``score(doc, prediction, mode, rng)``: a per-item record (lmms-eval
  ``process_results``), with the per-item score under ``"score"``;
- ``aggregate(records)``: the task metrics keyed by lmms-eval metric names.

Scoring modes: ``"lmms-eval-0.4"`` reproduces lmms-eval v0.4 exactly (the version the
paper ran), ``"original"`` uses the benchmark's original rule where the two differ.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

LMMS_EVAL_MODE = "lmms-eval-0.4"
ORIGINAL_MODE = "original"
SCORING_MODES = (LMMS_EVAL_MODE, ORIGINAL_MODE)

# Fields that identify a doc, in the order they are tried for error messages.
_ID_FIELDS = ("question_id", "id", "index", "doc_id")


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the evaluator needs to know about one lmms-eval task.

    Attributes:
        name: lmms-eval task name (also the module name).
        dataset_path: Hugging Face dataset repo, e.g. ``"lmms-lab/OK-VQA"``.
        dataset_name: Hugging Face config, or None for the default config.
        split: the evaluated split (lmms-eval ``test_split``).
        max_new_tokens: generation budget for the default llava-style wrapper.
        until: stop strings of the task (lmms-eval ``generation_kwargs.until``).
        headline_metric: the metric shown in the paper table.
        headline_scale: factor from the native value to the table value
            (100.0 for fractions, 1.0 for MMBench and MME).
        metrics: every lmms-eval metric name that ``aggregate`` returns
            (``aggregate`` may add diagnostic keys besides these).
        answer_field: the gold field of a doc (informational).
    """

    name: str
    dataset_path: str
    dataset_name: str | None
    split: str
    max_new_tokens: int
    until: tuple[str, ...]
    headline_metric: str
    headline_scale: float
    metrics: tuple[str, ...]
    answer_field: str

    def __post_init__(self) -> None:
        if self.headline_metric not in self.metrics:
            raise ValueError(
                f"{self.name}: headline metric {self.headline_metric!r} "
                f"is not among its metrics {self.metrics}"
            )
        if self.max_new_tokens <= 0:
            raise ValueError(
                f"{self.name}: max_new_tokens must be positive, "
                f"got {self.max_new_tokens}"
            )


def doc_label(doc: Mapping[str, Any]) -> str:
    """A short description of a doc for error messages: its id field, if any."""
    for field in _ID_FIELDS:
        if field in doc:
            return f"{field}={doc[field]!r}"
    question = doc.get("question")
    if isinstance(question, str):
        return f"question={question[:40]!r} (no id field)"
    return "<doc without id>"


def check_fields(doc: Mapping[str, Any], fields: Iterable[str], task: str) -> None:
    """Raise ValueError naming the task, the doc id and the first missing field."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"{task}: a doc must be a mapping, got {type(doc).__name__}")
    for field in fields:
        if field not in doc:
            raise ValueError(f"{task}: doc {doc_label(doc)} is missing field {field!r}")


def check_mode(mode: str, task: str) -> None:
    """Raise ValueError for an unknown scoring mode."""
    if mode not in SCORING_MODES:
        raise ValueError(
            f"{task}: unknown scoring mode {mode!r}; expected one of {SCORING_MODES}"
        )


def require_str(doc: Mapping[str, Any], field: str, task: str) -> str:
    """Return ``doc[field]`` if it is a string, else raise ValueError."""
    value = doc[field]
    if not isinstance(value, str):
        raise ValueError(
            f"{task}: doc {doc_label(doc)} field {field!r} must be a string, "
            f"got {type(value).__name__}"
        )
    return value


def strip_prediction(prediction: str, doc: Mapping[str, Any], task: str) -> str:
    """lmms-eval ``strip()``s every generation before ``process_results`` sees it."""
    if not isinstance(prediction, str):
        raise ValueError(
            f"{task}: prediction for doc {doc_label(doc)} must be a string, "
            f"got {type(prediction).__name__}"
        )
    return prediction.strip()


def is_missing(value: Any) -> bool:
    """True for None and float NaN (how pandas sees a missing value in a row)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def load_rgb(value: Any, doc: Mapping[str, Any], field: str, task: str) -> Image.Image:
    """Turn a dataset image cell into an RGB PIL image (lmms-eval ``.convert("RGB")``).

    Accepts a PIL image or an undecoded Hugging Face image cell
    (``{"bytes": ..., "path": ...}``). Raises ValueError naming the doc and the field
    when the image is missing or cannot be read.
    """
    where = f"{task}: doc {doc_label(doc)} field {field!r}"
    if is_missing(value):
        raise ValueError(f"{where}: image is missing")
    try:
        if isinstance(value, Image.Image):
            return value.convert("RGB")
        if isinstance(value, Mapping):
            if value.get("bytes") is not None:
                with Image.open(io.BytesIO(value["bytes"])) as image:
                    return image.convert("RGB")
            if value.get("path"):
                with Image.open(value["path"]) as image:
                    return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: image cannot be read ({error})") from error
    raise ValueError(f"{where}: not an image (got {type(value).__name__})")


def single_image(doc: Mapping[str, Any], task: str) -> list[Image.Image]:
    """``doc_to_visual`` of the single-image tasks: ``[doc["image"]]`` in RGB."""
    check_fields(doc, ["image"], task)
    return [load_rgb(doc["image"], doc, "image", task)]


def mean(values: Sequence[float]) -> float:
    """lmms-eval's ``mean`` aggregation: ``sum(values) / len(values)``."""
    if len(values) == 0:
        raise ValueError("cannot average an empty list of scores")
    return sum(values) / len(values)


def check_records(records: Sequence[Mapping[str, Any]], task: str) -> None:
    """Raise ValueError when there is nothing to aggregate."""
    if len(records) == 0:
        raise ValueError(f"{task}: no records to aggregate")
