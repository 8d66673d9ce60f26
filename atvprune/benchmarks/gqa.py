"""gqa: GQA testdev-balanced (12,578 questions), lmms-eval's generic exact match.

Questions and images live in two configs of ``lmms-lab/GQA``, joined by the question's
``imageId`` -> the image row's ``id``; ``attach_images`` does the join up front (as
lmms-eval HEAD's ``process_docs`` does; v0.3-v0.5 joined lazily, same scores).

Scoring is not the official GQA evaluator: lowercase both strings, delete every ASCII
punctuation character (``string.punctuation``) from both, and compare. The prediction
is framework-stripped, the gold is not. No article, number-word or whitespace
normalization: "the dog" != "dog", "2" != "two", but "T-shirt" == "tshirt".
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from atvprune.benchmarks.base import (
    BenchmarkSpec,
    check_fields,
    check_mode,
    check_records,
    mean,
    require_str,
    single_image,
    strip_prediction,
)

if TYPE_CHECKING:
    import datasets

TASK = BenchmarkSpec(
    name="gqa",
    dataset_path="lmms-lab/GQA",
    dataset_name="testdev_balanced_instructions",
    split="testdev",
    max_new_tokens=16,
    # The YAML gives generation_kwargs without `until`, so lmms-eval adds "\n\n".
    until=("\n\n",),
    headline_metric="exact_match",
    headline_scale=100.0,
    metrics=("exact_match",),
    answer_field="answer",
)

IMAGES_DATASET_NAME = "testdev_balanced_images"
POST_PROMPT = "\nAnswer the question using a single word or phrase."

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)


def attach_images(
    questions: datasets.Dataset, images: datasets.Dataset
) -> datasets.Dataset:
    """Return ``questions`` with an ``image`` column taken from ``images``.

    Row i gets the image whose ``id`` equals question i's ``imageId``. An existing
    ``image`` column of ``questions`` is replaced. Like lmms-eval HEAD's
    ``process_docs``, this stores one copy of the image per question (the column
    join has to materialize the rows), so the result is larger than the images.
    Raises KeyError naming the first ``imageId`` that has no image, and ValueError
    for missing columns or duplicate image ids.
    """
    import datasets  # heavy import, only needed here

    for dataset, column, what in (
        (questions, "imageId", "questions"),
        (images, "id", "images"),
        (images, "image", "images"),
    ):
        if column not in dataset.column_names:
            raise ValueError(f"gqa: the {what} dataset has no {column!r} column")
    row_of_image: dict[str, int] = {}
    for row, image_id in enumerate(images["id"]):
        if image_id in row_of_image:
            raise ValueError(f"gqa: image id {image_id!r} occurs twice")
        row_of_image[image_id] = row
    rows = []
    for image_id in questions["imageId"]:
        if image_id not in row_of_image:
            raise KeyError(
                f"gqa: no image with id {image_id!r} (imageId of a question)"
            )
        rows.append(row_of_image[image_id])
    # select() only stores an index mapping, so the images are not decoded here.
    aligned_images = (
        images.select(rows)
        .select_columns(["image"])
        .flatten_indices(keep_in_memory=True)
    )
    if "image" in questions.column_names:
        questions = questions.remove_columns("image")
    return datasets.concatenate_datasets([questions, aligned_images], axis=1)


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB (the doc must have gone through attach_images)."""
    return single_image(doc, TASK.name)


def prompt(doc: Mapping[str, Any]) -> str:
    """``"{question}" + POST_PROMPT``."""
    check_fields(doc, ["question"], TASK.name)
    return require_str(doc, "question", TASK.name) + POST_PROMPT


def normalize(text: str) -> str:
    """``ignore_case`` + ``ignore_punctuation``: lowercase, delete ASCII punctuation."""
    return text.lower().translate(_DELETE_PUNCTUATION)


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Record with ``"score"`` 1.0 iff normalize(stripped prediction) equals
    normalize(gold). Both modes are identical; ``rng`` is unused."""
    check_mode(mode, TASK.name)
    check_fields(doc, ["answer"], TASK.name)
    gold = require_str(doc, "answer", TASK.name)
    stripped = strip_prediction(prediction, doc, TASK.name)
    correct = normalize(stripped) == normalize(gold)
    return {
        "question_id": doc.get("id"),
        "prediction": stripped,
        "answer": gold,
        "score": 1.0 if correct else 0.0,
    }


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``exact_match`` = mean score (0-1)."""
    check_records(records, TASK.name)
    return {"exact_match": mean([record["score"] for record in records])}
