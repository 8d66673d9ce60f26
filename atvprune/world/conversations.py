"""ShareGPT4V-like instruction conversations in the LLaVA-NeXT-Data schema.

A record is ``{"id", "image", "conversations", "data_source"}``; ``conversations`` is
a list of ``{"from": "human" | "gpt", "value": str}``. The first human turn is
``"<image>\\n"`` + a description request and the gpt answer is the dense
``caption(scene)``; then come 1-3 short question/answer turns about the same scene.
These records train the tiny model and, from a disjoint scene pool, form the
calibration source.
"""

from __future__ import annotations

import numpy as np
from datasets import Features, Image, List, Value

from atvprune.world.benchmarks import (
    QA,
    Record,
    ask_colour_at_cell,
    ask_colour_of_shape,
    ask_count_all,
    ask_count_shape,
    ask_exists,
    ask_number,
    ask_position_of_shape,
    ask_relation,
    ask_shape_at_cell,
    pick,
    sentence,
)
from atvprune.world.scenes import caption, render, sample_scene_from_pool

DATA_SOURCE = "sharegpt4v_mini"
IMAGE_TAG = "<image>"

FEATURES = Features(
    {
        "id": Value("string"),
        "image": Image(),
        "conversations": List({"from": Value("string"), "value": Value("string")}),
        "data_source": Value("string"),
    }
)

DESCRIPTION_REQUESTS: tuple[str, ...] = (
    "Describe the image in detail.",
    "What do you see in this image?",
    "Give a detailed description of the picture.",
    "List every object in the image and where it is.",
)
MIN_QA_TURNS = 1
MAX_QA_TURNS = 3
_QA_FAMILIES = (
    ask_colour_of_shape,
    ask_shape_at_cell,
    ask_colour_at_cell,
    ask_position_of_shape,
    ask_count_shape,
    ask_count_all,
    ask_number,
    ask_relation,
    ask_exists,
)


def _qa_turns(scene, rng: np.random.Generator, n_turns: int) -> list[QA]:
    """Up to ``n_turns`` answerable questions with distinct texts."""
    turns: list[QA] = []
    for index in rng.permutation(len(_QA_FAMILIES)):
        if len(turns) == n_turns:
            break
        qa = _QA_FAMILIES[int(index)](scene, rng)
        if qa is not None and all(qa.question != t.question for t in turns):
            turns.append(qa)
    return turns


def conversation_records(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> list[Record]:
    """``n`` conversation records from scenes of ``pool``; ids name ``split``."""
    if n < 1:
        raise ValueError(f"need at least one conversation, got n={n}")
    records = []
    for i in range(n):
        scene = sample_scene_from_pool(rng, pool)
        request = pick(rng, DESCRIPTION_REQUESTS)
        turns = [
            {"from": "human", "value": f"{IMAGE_TAG}\n{request}"},
            {"from": "gpt", "value": caption(scene)},
        ]
        n_turns = int(rng.integers(MIN_QA_TURNS, MAX_QA_TURNS + 1))
        for qa in _qa_turns(scene, rng, n_turns):
            turns.append({"from": "human", "value": sentence(qa.question)})
            turns.append({"from": "gpt", "value": qa.answer})
        records.append(
            {
                "id": f"{DATA_SOURCE}_{split}_{i:06d}",
                "image": render(scene),
                "conversations": turns,
                "data_source": DATA_SOURCE,
            }
        )
    return records
