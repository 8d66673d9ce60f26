"""Mini-world records in the exact schemas of the nine lmms-eval benchmarks.

One builder per lmms-eval task name. A builder draws scenes from one pool (see
``scenes.scene_pool``), asks template questions whose answer is unambiguous, and
returns ``{dataset_dir: [record, ...]}``: the records carry exactly the field names
and types of the real HF dataset (``FEATURES``), with the image as a PIL image.

Sizes: ``n`` is a target number of rows. Builders whose rows come in groups (GQA:
questions per image, POPE: questions per image, MMBench: CircularEval copies, MME:
the yes/no pair) add whole groups until at least ``n`` rows exist, so a split has
between n and n + group size - 1 rows.

Question families (``QA``) are shared with the instruction conversations. Spatial
relations are half-planes: "to the left of X" means any cell with a smaller column
than X, "above X" any cell with a smaller row; a relation question is asked only
when exactly one shape lies in that half-plane. The sign (digit) is not a shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from datasets import Features, Image, List, Value

from atvprune.world.scenes import (
    CELLS,
    COLOURS,
    DIGITS,
    IMAGE_SIZE,
    SHAPE_PLURALS,
    SHAPES,
    Scene,
    caption,
    cell_row_col,
    render,
    sample_scene_from_pool,
)

T = TypeVar("T")
Record = dict[str, Any]

TASKS: tuple[str, ...] = (
    "ok_vqa_val2014",
    "vizwiz_vqa_val",
    "textvqa_val",
    "gqa",
    "pope",
    "scienceqa_img",
    "mmbench_en_dev",
    "mme",
    "mmmu_val",
)
GQA_INSTRUCTIONS = "gqa/testdev_balanced_instructions"
GQA_IMAGES = "gqa/testdev_balanced_images"

# Dataset directories (relative to the world root) written for each task.
TASK_DATASETS: dict[str, tuple[str, ...]] = {
    task: (task,) for task in TASKS if task != "gqa"
} | {"gqa": (GQA_INSTRUCTIONS, GQA_IMAGES)}

# The split lmms-eval evaluates, per task (every dataset dir also gets "train").
EVAL_SPLITS: dict[str, str] = {
    "ok_vqa_val2014": "val2014",
    "vizwiz_vqa_val": "val",
    "textvqa_val": "validation",
    "gqa": "testdev",
    "pope": "test",
    "scienceqa_img": "test",
    "mmbench_en_dev": "dev",
    "mme": "test",
    "mmmu_val": "validation",
}
TRAIN_SPLIT = "train"

# Columns holding images, per dataset dir (used by the disjointness check).
IMAGE_COLUMNS: dict[str, str] = {
    name: "image_1" if name == "mmmu_val" else "image"
    for names in TASK_DATASETS.values()
    for name in names
    if name != GQA_INSTRUCTIONS
}

_S = Value("string")

# Real field names and types, in the order of the HF dataset cards.
FEATURES: dict[str, Features] = {
    "ok_vqa_val2014": Features(
        {
            "question_id": _S,
            "image": Image(),
            "question": _S,
            "answers": List(_S),
            "question_type": _S,
            "answer_type": _S,
        }
    ),
    "vizwiz_vqa_val": Features(
        {
            "question_id": _S,
            "image": Image(),
            "question": _S,
            "answers": List(_S),
            "category": _S,
        }
    ),
    "textvqa_val": Features(
        {
            "image_id": _S,
            "question_id": Value("int32"),
            "question": _S,
            "question_tokens": List(_S),
            "image": Image(),
            "image_width": Value("int32"),
            "image_height": Value("int32"),
            "flickr_original_url": _S,
            "flickr_300k_url": _S,
            "answers": List(_S),
            "image_classes": List(_S),
            "set_name": _S,
            "ocr_tokens": List(_S),
        }
    ),
    GQA_INSTRUCTIONS: Features(
        {
            "id": _S,
            "imageId": _S,
            "question": _S,
            "answer": _S,
            "fullAnswer": _S,
            "isBalanced": Value("bool"),
            "groups": {"global": _S, "local": _S},
            "entailed": _S,
            "equivalent": _S,
            "types": {"structural": _S, "semantic": _S, "detailed": _S},
            "annotations": {
                "question": List({"objectId": _S, "value": _S}),
                "answer": List({"objectId": _S, "value": _S}),
                "fullAnswer": List({"objectId": _S, "value": _S}),
            },
            "semantic": List(
                {"operation": _S, "argument": _S, "dependencies": List(Value("int32"))}
            ),
            "semanticStr": _S,
        }
    ),
    GQA_IMAGES: Features({"id": _S, "image": Image()}),
    "pope": Features(
        {
            "id": _S,
            "question_id": _S,
            "question": _S,
            "answer": _S,
            "image_source": _S,
            "image": Image(),
            "category": _S,
        }
    ),
    "scienceqa_img": Features(
        {
            "image": Image(),
            "question": _S,
            "choices": List(_S),
            "answer": Value("int8"),
            "hint": _S,
            "task": _S,
            "grade": _S,
            "subject": _S,
            "topic": _S,
            "category": _S,
            "skill": _S,
            "lecture": _S,
            "solution": _S,
        }
    ),
    "mmbench_en_dev": Features(
        {
            "index": Value("int64"),
            "question": _S,
            "hint": _S,
            "answer": _S,
            "A": _S,
            "B": _S,
            "C": _S,
            "D": _S,
            "category": _S,
            "image": Image(),
            "source": _S,
            "L2-category": _S,
            "comment": _S,
            "split": _S,
        }
    ),
    "mme": Features(
        {
            "question_id": _S,
            "image": Image(),
            "question": _S,
            "answer": _S,
            "category": _S,
        }
    ),
    "mmmu_val": Features(
        {
            "id": _S,
            "question": _S,
            "options": _S,
            "explanation": _S,
            **{f"image_{k}": Image() for k in range(1, 8)},
            "img_type": _S,
            "answer": _S,
            "topic_difficulty": _S,
            "question_type": _S,
            "subfield": _S,
        }
    ),
}


# --- small helpers --------------------------------------------------------------


def pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One element of a non-empty sequence, uniformly."""
    if not items:
        raise ValueError("cannot pick from an empty sequence")
    return items[int(rng.integers(len(items)))]


def others(vocabulary: Sequence[str], value: str) -> tuple[str, ...]:
    return tuple(v for v in vocabulary if v != value)


def sentence(text: str) -> str:
    """Upper-case the first character only (str.capitalize would lower the rest)."""
    return text[:1].upper() + text[1:]


def noisy_answers(
    rng: np.random.Generator, gold: str, wrong: Sequence[str], max_noise: int = 3
) -> list[str]:
    """Ten annotator answers: ``gold`` with 0..max_noise slots replaced by ``wrong``."""
    answers = [gold] * 10
    n_noise = int(rng.integers(0, max_noise + 1))
    for slot in rng.choice(10, size=n_noise, replace=False):
        answers[int(slot)] = pick(rng, wrong)
    return answers


def draw_until(
    rng: np.random.Generator, pool: str, make: Callable[[Scene], T | None]
) -> tuple[Scene, T]:
    """Sample scenes from ``pool`` until ``make(scene)`` is not None."""
    while True:
        scene = sample_scene_from_pool(rng, pool)
        made = make(scene)
        if made is not None:
            return scene, made


# The multiple-choice train splits ask several questions about each scene, in a row,
# so one training sequence (benchmark_examples groups consecutive questions about one
# image) carries several answers per image. Held-out splits ask one per scene.
TRAIN_QUESTIONS_PER_SCENE = 3


def questions_per_scene(
    rng: np.random.Generator,
    pool: str,
    split: str,
    ask: Callable[[Scene], T | None],
    question_of: Callable[[T], str],
) -> Iterator[tuple[Scene, T]]:
    """Endless (scene, question) pairs: one per scene, or on the train split up to
    TRAIN_QUESTIONS_PER_SCENE with distinct question texts (a bounded number of tries,
    so a scene with fewer distinct questions just gets fewer)."""
    per_scene = TRAIN_QUESTIONS_PER_SCENE if split == TRAIN_SPLIT else 1
    while True:
        scene, first = draw_until(rng, pool, ask)
        asked = [first]
        for _ in range(4 * per_scene):
            if len(asked) == per_scene:
                break
            more = ask(scene)
            if more is not None and all(
                question_of(more) != question_of(q) for q in asked
            ):
                asked.append(more)
        for question in asked:
            yield scene, question


def image_key(scene: Scene) -> str:
    """A short stable hex id of a scene (equal scenes, equal keys)."""
    return hashlib.sha256(caption(scene).encode("utf-8")).hexdigest()[:16]


# --- question families ----------------------------------------------------------


@dataclass(frozen=True)
class QA:
    """A question about a scene with its single correct short answer."""

    question: str  # lowercase, ends with "?"
    answer: str
    kind: str  # color | shape | position | count | number | relation | yes/no
    wrong: tuple[str, ...]  # plausible wrong answers (distractors, annotator noise)
    subject: str = ""  # the shape the question is about, if any


def _counts_except(n: int) -> tuple[str, ...]:
    return tuple(str(k) for k in range(0, 5) if k != n)


def ask_colour_of_shape(scene: Scene, rng: np.random.Generator) -> QA | None:
    shapes = scene.unique_shapes()
    if not shapes:
        return None
    shape = pick(rng, shapes)
    colour = scene.object_with_shape(shape)[1]
    return QA(
        f"what color is the {shape}?", colour, "color", others(COLOURS, colour), shape
    )


def ask_shape_at_cell(scene: Scene, rng: np.random.Generator) -> QA | None:
    shape, _, cell = pick(rng, scene.objects)
    return QA(f"what shape is at the {cell}?", shape, "shape", others(SHAPES, shape))


def ask_colour_at_cell(scene: Scene, rng: np.random.Generator) -> QA | None:
    _, colour, cell = pick(rng, scene.objects)
    return QA(
        f"which color is the shape at the {cell}?",
        colour,
        "color",
        others(COLOURS, colour),
    )


def ask_position_of_shape(scene: Scene, rng: np.random.Generator) -> QA | None:
    shapes = scene.unique_shapes()
    if not shapes:
        return None
    shape = pick(rng, shapes)
    cell = scene.object_with_shape(shape)[2]
    return QA(f"where is the {shape}?", cell, "position", others(CELLS, cell), shape)


def ask_which_present(scene: Scene, rng: np.random.Generator) -> QA:
    """Multiple-choice presence: one shape of the scene against absent shapes only, so
    exactly one option is right (every scene leaves at least two shapes absent)."""
    present = [s for s in SHAPES if s in scene.shapes_present()]
    absent = tuple(s for s in SHAPES if s not in scene.shapes_present())
    return QA("which shape is in the image?", pick(rng, present), "presence", absent)


def ask_count_shape(scene: Scene, rng: np.random.Generator) -> QA | None:
    # Mostly present shapes; sometimes an absent one (answer "0").
    present = [s for s in SHAPES if s in scene.shapes_present()]
    shape = pick(rng, present) if rng.random() < 0.8 else pick(rng, SHAPES)
    n = scene.count(shape)
    return QA(
        f"how many {SHAPE_PLURALS[shape]} are there?",
        str(n),
        "count",
        _counts_except(n),
        shape,
    )


def ask_count_all(scene: Scene, rng: np.random.Generator) -> QA | None:
    n = len(scene.objects)
    return QA("how many shapes are there?", str(n), "count", _counts_except(n))


def ask_number(scene: Scene, rng: np.random.Generator) -> QA | None:
    if scene.digit is None:
        return None
    value = str(scene.digit[0])
    return QA(
        "what number is written on the sign?", value, "number", others(DIGITS, value)
    )


def ask_exists(scene: Scene, rng: np.random.Generator) -> QA | None:
    present = [s for s in SHAPES if s in scene.shapes_present()]
    absent = [s for s in SHAPES if s not in scene.shapes_present()]
    if rng.random() < 0.5:
        shape, answer = pick(rng, present), "yes"
    else:
        shape, answer = pick(rng, absent), "no"
    return QA(
        f"is there a {shape} in the image?",
        answer,
        "yes/no",
        others(("yes", "no"), answer),
        shape,
    )


RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")


def _in_half_plane(relation: str, target_cell: str, ref_cell: str) -> bool:
    (tr, tc), (rr, rc) = cell_row_col(target_cell), cell_row_col(ref_cell)
    return {
        "to the left of": tc < rc,
        "to the right of": tc > rc,
        "above": tr < rr,
        "below": tr > rr,
    }[relation]


def relation_triples(
    scene: Scene,
) -> list[tuple[tuple[str, str, str], str, tuple[str, str, str]]]:
    """(reference, relation, target) with a uniquely named reference and one target.

    The reference is named by colour and shape, so that pair must be unique; the
    target must be the only shape in the relation's half-plane.
    """
    pairs = Counter((shape, colour) for shape, colour, _ in scene.objects)
    triples = []
    for ref in scene.objects:
        if pairs[(ref[0], ref[1])] != 1:
            continue
        for relation in RELATIONS:
            targets = [
                obj
                for obj in scene.objects
                if obj is not ref and _in_half_plane(relation, obj[2], ref[2])
            ]
            if len(targets) == 1:
                triples.append((ref, relation, targets[0]))
    return triples


def ask_relation(scene: Scene, rng: np.random.Generator) -> QA | None:
    triples = relation_triples(scene)
    if not triples:
        return None
    ref, relation, target = pick(rng, triples)
    the_ref = f"the {ref[1]} {ref[0]}"
    if rng.random() < 0.5:
        return QA(
            f"what shape is {relation} {the_ref}?",
            target[0],
            "shape",
            others(SHAPES, target[0]),
        )
    return QA(
        f"what color is the shape {relation} {the_ref}?",
        target[1],
        "color",
        others(COLOURS, target[1]),
    )


QAFamily = Callable[[Scene, np.random.Generator], "QA | None"]


def ask_any(
    scene: Scene, rng: np.random.Generator, families: Sequence[QAFamily]
) -> QA | None:
    """Try the families in a random order; the first answerable question wins."""
    for index in rng.permutation(len(families)):
        qa = families[int(index)](scene, rng)
        if qa is not None:
            return qa
    return None


def with_absent_distractors(scene: Scene, qa: QA) -> QA:
    """The multiple-choice form of a question: every distractor is a value the scene
    does *not* show (a colour no object wears, a shape that is absent, an empty cell).

    So each option can be checked against the picture on its own, and exactly one
    option is true of the image. Counting questions keep their nearby numbers: a count
    has no "absent" value.
    """
    if qa.kind == "color":
        worn = {colour for _, colour, _ in scene.objects}
        wrong = tuple(c for c in COLOURS if c not in worn)
    elif qa.kind in ("shape", "presence"):
        wrong = tuple(s for s in SHAPES if s not in scene.shapes_present())
    elif qa.kind == "position":
        wrong = tuple(c for c in CELLS if scene.object_at(c) is None)
    else:
        return qa
    return dataclasses.replace(qa, wrong=wrong)


def multiple_choice(
    rng: np.random.Generator, qa: QA, n_options: int
) -> tuple[list[str], int]:
    """Shuffled options (gold + distinct distractors) and the gold's index."""
    n_wrong = min(n_options - 1, len(qa.wrong))
    picks = rng.choice(len(qa.wrong), size=n_wrong, replace=False)
    wrong = [qa.wrong[int(i)] for i in picks]
    options = [qa.answer, *wrong]
    order = rng.permutation(len(options))
    shuffled = [options[int(i)] for i in order]
    return shuffled, shuffled.index(qa.answer)


# --- 1. ok_vqa_val2014 ----------------------------------------------------------

_VQA_QUESTION_TYPES = {
    "color": "what color is the",
    "shape": "what shape is",
    "position": "where is the",
    "count": "how many",
}
_OKVQA_FAMILIES = (
    ask_colour_of_shape,
    ask_shape_at_cell,
    ask_position_of_shape,
    ask_count_shape,
)


def build_ok_vqa(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Open questions with 10 noisy annotator answers (VQA partial credit)."""
    records = []
    for i in range(n):
        scene, qa = draw_until(rng, pool, lambda s: ask_any(s, rng, _OKVQA_FAMILIES))
        records.append(
            {
                "question_id": str(i),
                "image": render(scene),
                "question": sentence(qa.question),
                "answers": noisy_answers(rng, qa.answer, qa.wrong),
                "question_type": _VQA_QUESTION_TYPES[qa.kind],
                "answer_type": "number" if qa.kind == "count" else "other",
            }
        )
    return {"ok_vqa_val2014": records}


# --- 2. vizwiz_vqa_val ----------------------------------------------------------

P_UNANSWERABLE = 0.2
_VIZWIZ_FAMILIES = (ask_colour_of_shape, ask_shape_at_cell, ask_count_shape, ask_exists)
_VIZWIZ_CATEGORY = {"color": "other", "shape": "other", "count": "number"}


def _ask_unanswerable(scene: Scene, rng: np.random.Generator) -> QA:
    absent = [s for s in SHAPES if s not in scene.shapes_present()]
    shape = pick(rng, absent)
    return QA(
        f"what color is the {shape}?",
        "unanswerable",
        "unanswerable",
        (*COLOURS, "unsuitable"),
        shape,
    )


def build_vizwiz(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """~20% questions about an absent shape, answered mostly "unanswerable"."""
    records = []
    for i in range(n):
        if rng.random() < P_UNANSWERABLE:
            scene, qa = draw_until(rng, pool, lambda s: _ask_unanswerable(s, rng))
            category = "unanswerable"
            wrong: Sequence[str] = qa.wrong
        else:
            scene, qa = draw_until(
                rng, pool, lambda s: ask_any(s, rng, _VIZWIZ_FAMILIES)
            )
            category = _VIZWIZ_CATEGORY.get(qa.kind, qa.kind)
            wrong = (*qa.wrong, "unanswerable")
        records.append(
            {
                "question_id": f"VizWiz_{split}_{i:08d}.jpg",
                "image": render(scene),
                "question": qa.question,  # lowercase, as VizWiz users type
                "answers": noisy_answers(rng, qa.answer, wrong),
                "category": category,
            }
        )
    return {"vizwiz_vqa_val": records}


# --- 3. textvqa_val -------------------------------------------------------------

_TEXTVQA_QUESTIONS = (
    "what number is written on the sign?",
    "what number is on the sign?",
    "what number is shown in the image?",
)


def build_textvqa(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Read the digit on the sign; ocr_tokens hold the digit."""
    set_name = "train" if split == TRAIN_SPLIT else "val"
    records = []
    for i in range(n):
        scene, qa = draw_until(rng, pool, lambda s: ask_number(s, rng))
        question = pick(rng, _TEXTVQA_QUESTIONS)
        records.append(
            {
                "image_id": image_key(scene),
                "question_id": i,
                "question": question,
                "question_tokens": question.rstrip("?").split(),
                "image": render(scene),
                "image_width": IMAGE_SIZE,
                "image_height": IMAGE_SIZE,
                "flickr_original_url": "",  # offline world: no source photo
                "flickr_300k_url": "",
                "answers": noisy_answers(rng, qa.answer, qa.wrong),
                "image_classes": [*sorted(scene.shapes_present()), "sign"],
                "set_name": set_name,
                "ocr_tokens": [qa.answer],
            }
        )
    return {"textvqa_val": records}


# --- 4. gqa ---------------------------------------------------------------------


@dataclass(frozen=True)
class GQAQuestion:
    question: str
    answer: str
    full_answer: str
    structural: str
    semantic: str
    detailed: str
    global_group: str | None
    program: tuple[tuple[str, str, tuple[int, ...]], ...]  # (operation, arg, deps)
    mentioned: tuple[tuple[str, str], ...]  # (object id, word) in the question
    answered: tuple[tuple[str, str], ...]  # (object id, word) the answer refers to


def _object_id(cell: str) -> str:
    return f"o{CELLS.index(cell)}"


def _gqa_relation(scene: Scene, rng: np.random.Generator) -> GQAQuestion | None:
    triples = relation_triples(scene)
    if not triples:
        return None
    (r_shape, r_colour, r_cell), relation, (t_shape, t_colour, t_cell) = pick(
        rng, triples
    )
    ref_id, target_id = _object_id(r_cell), _object_id(t_cell)
    the_ref = f"the {r_colour} {r_shape}"
    head = [
        ("select", f"{r_shape} ({ref_id})", ()),
        ("filter color", r_colour, (0,)),
        ("relate", f"_,{relation},s ({target_id})", (1,)),
    ]
    if rng.random() < 0.5:
        return GQAQuestion(
            f"What shape is {relation} {the_ref}?",
            t_shape,
            f"The shape {relation} {the_ref} is a {t_shape}.",
            "query",
            "rel",
            "relS",
            "shape",
            (*head, ("query", "name", (2,))),
            ((ref_id, r_shape),),
            ((target_id, t_shape),),
        )
    return GQAQuestion(
        f"What color is the shape {relation} {the_ref}?",
        t_colour,
        f"The shape {relation} {the_ref} is {t_colour}.",
        "query",
        "rel",
        "relA",
        "color",
        (*head, ("query", "color", (2,))),
        ((ref_id, r_shape),),
        ((target_id, "shape"),),
    )


def _gqa_colour_at_cell(scene: Scene, rng: np.random.Generator) -> GQAQuestion | None:
    _, colour, cell = pick(rng, scene.objects)
    oid = _object_id(cell)
    return GQAQuestion(
        f"Which color is the shape at the {cell}?",
        colour,
        f"The shape at the {cell} is {colour}.",
        "query",
        "attr",
        "positionColor",
        "color",
        (("select", f"shape ({oid})", ()), ("query", "color", (0,))),
        ((oid, "shape"),),
        ((oid, "shape"),),
    )


def _gqa_colour_of_shape(scene: Scene, rng: np.random.Generator) -> GQAQuestion | None:
    shapes = scene.unique_shapes()
    if not shapes:
        return None
    shape = pick(rng, shapes)
    _, colour, cell = scene.object_with_shape(shape)
    oid = _object_id(cell)
    return GQAQuestion(
        f"What color is the {shape}?",
        colour,
        f"The {shape} is {colour}.",
        "query",
        "attr",
        "color",
        "color",
        (("select", f"{shape} ({oid})", ()), ("query", "color", (0,))),
        ((oid, shape),),
        ((oid, shape),),
    )


def _gqa_exists(scene: Scene, rng: np.random.Generator) -> GQAQuestion | None:
    qa = ask_exists(scene, rng)
    assert qa is not None  # every scene has present and absent shapes
    shape = qa.subject
    if qa.answer == "yes":
        _, _, cell = next(o for o in scene.objects if o[0] == shape)
        ids: tuple[tuple[str, str], ...] = ((_object_id(cell), shape),)
        full = f"Yes, there is a {shape}."
    else:
        ids, full = (), f"No, there are no {SHAPE_PLURALS[shape]}."
    return GQAQuestion(
        f"Is there a {shape} in the image?",
        qa.answer,
        full,
        "verify",
        "obj",
        "exist",
        None,
        (("select", f"{shape} (-)", ()), ("exist", "?", (0,))),
        ids,
        (),
    )


def _gqa_verify_colour(scene: Scene, rng: np.random.Generator) -> GQAQuestion | None:
    shapes = scene.unique_shapes()
    if not shapes:
        return None
    shape = pick(rng, shapes)
    _, colour, cell = scene.object_with_shape(shape)
    asked = colour if rng.random() < 0.5 else pick(rng, others(COLOURS, colour))
    answer = "yes" if asked == colour else "no"
    full = (
        f"Yes, the {shape} is {colour}."
        if answer == "yes"
        else f"No, the {shape} is {colour}."
    )
    oid = _object_id(cell)
    return GQAQuestion(
        f"Is the {shape} {asked}?",
        answer,
        full,
        "verify",
        "attr",
        "verifyAttr",
        None,
        (("select", f"{shape} ({oid})", ()), ("verify color", asked, (0,))),
        ((oid, shape),),
        (),
    )


_GQA_FAMILIES = (
    _gqa_relation,
    _gqa_relation,  # relational questions are GQA's hallmark: double weight
    _gqa_colour_at_cell,
    _gqa_colour_of_shape,
    _gqa_exists,
    _gqa_verify_colour,
)
GQA_MAX_QUESTIONS_PER_IMAGE = 3


def _semantic_str(program: Sequence[tuple[str, str, tuple[int, ...]]]) -> str:
    steps = []
    for operation, argument, deps in program:
        suffix = f" [{', '.join(str(d) for d in deps)}]" if deps else ""
        steps.append(f"{operation}: {argument}{suffix}")
    return "->".join(steps)


def _gqa_record(q: GQAQuestion, qid: str, image_id: str) -> Record:
    def annotate(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"objectId": oid, "value": word} for oid, word in pairs]

    return {
        "id": qid,
        "imageId": image_id,
        "question": q.question,
        "answer": q.answer,
        "fullAnswer": q.full_answer,
        "isBalanced": True,
        "groups": {"global": q.global_group, "local": f"{q.detailed}-{q.answer}"},
        "entailed": json.dumps([]),
        "equivalent": json.dumps([qid]),
        "types": {
            "structural": q.structural,
            "semantic": q.semantic,
            "detailed": q.detailed,
        },
        "annotations": {
            "question": annotate(q.mentioned),
            "answer": annotate(q.answered),
            "fullAnswer": annotate((*q.mentioned, *q.answered)),
        },
        "semantic": [
            {"operation": op, "argument": arg, "dependencies": list(deps)}
            for op, arg, deps in q.program
        ],
        "semanticStr": _semantic_str(q.program),
    }


def build_gqa(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Relational/attribute questions (1-3 per image) plus the image table."""
    questions: list[Record] = []
    images: list[Record] = []
    while len(questions) < n:
        scene = sample_scene_from_pool(rng, pool)
        image_id = f"n{len(images):06d}"
        n_questions = int(rng.integers(1, GQA_MAX_QUESTIONS_PER_IMAGE + 1))
        asked: set[str] = set()
        for index in rng.permutation(len(_GQA_FAMILIES)):
            if len(asked) == n_questions:
                break
            q = _GQA_FAMILIES[int(index)](scene, rng)
            if q is None or q.question in asked:
                continue
            asked.add(q.question)
            questions.append(_gqa_record(q, str(len(questions)), image_id))
        if asked:
            images.append({"id": image_id, "image": render(scene)})
    return {GQA_INSTRUCTIONS: questions, GQA_IMAGES: images}


# --- 5. pope --------------------------------------------------------------------

POPE_SETTINGS: tuple[str, ...] = ("adversarial", "popular", "random")
POPE_MAX_PER_POLARITY = 3


def pope_statistics(
    scenes: Sequence[Scene],
) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Shape frequencies (images containing it) and co-occurrence counts."""
    frequency: Counter[str] = Counter()
    together: dict[str, Counter[str]] = {s: Counter() for s in SHAPES}
    for scene in scenes:
        present = scene.shapes_present()
        frequency.update(present)
        for a in present:
            together[a].update(present - {a})
    return frequency, together


def pope_negatives(
    setting: str,
    present: set[str],
    k: int,
    rng: np.random.Generator,
    frequency: Counter[str],
    together: dict[str, Counter[str]],
) -> list[str]:
    """k absent shapes chosen with the POPE strategy of ``setting``.

    random: uniform without replacement; popular: the most frequent absent shapes;
    adversarial: the absent shapes that co-occur most with the present ones
    (sum of co-occurrence counts). Ties go to frequency, then to SHAPES order.
    """
    absent = [s for s in SHAPES if s not in present]
    if setting == "random":
        return [absent[int(i)] for i in rng.choice(len(absent), size=k, replace=False)]
    if setting == "popular":
        ranked = sorted(absent, key=lambda s: (-frequency[s], SHAPES.index(s)))
    elif setting == "adversarial":
        ranked = sorted(
            absent,
            key=lambda s: (
                -sum(together[p][s] for p in present),
                -frequency[s],
                SHAPES.index(s),
            ),
        )
    else:
        raise ValueError(f"unknown POPE setting {setting!r}; expected {POPE_SETTINGS}")
    return ranked[:k]


def build_pope(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Sample images until their POPE questions reach ``n`` rows, then ask them."""
    scenes: list[Scene] = []
    rows = 0
    while rows < n:
        scene = sample_scene_from_pool(rng, pool)
        scenes.append(scene)
        rows += len(POPE_SETTINGS) * 2 * pope_k(scene)
    return {"pope": pope_rows(scenes, rng, split)}


def pope_rows(
    scenes: Sequence[Scene], rng: np.random.Generator, split: str
) -> list[Record]:
    """Per image and setting: k "yes" and k "no" questions, k = min(3, present, absent).

    With six shapes and 2-4 objects an image has 1-4 distinct shapes present and 2-5
    absent, so k is 1-3 and the answers stay exactly balanced. The positives of an
    image are the same in the three settings; frequencies and co-occurrences are
    counted over ``scenes`` (the images of this split), as POPE does. Rows come in
    setting blocks (adversarial, popular, random); ``question_id`` counts within a
    setting, ``id`` over the whole split.
    """
    frequency, together = pope_statistics(scenes)
    per_setting: dict[str, list[Record]] = {s: [] for s in POPE_SETTINGS}
    for image_index, scene in enumerate(scenes):
        image = render(scene)
        present = scene.shapes_present()
        k = pope_k(scene)
        present_order = [s for s in SHAPES if s in present]
        positives = [present_order[int(i)] for i in rng.permutation(len(present))[:k]]
        for setting in POPE_SETTINGS:
            negatives = pope_negatives(setting, present, k, rng, frequency, together)
            for positive, negative in zip(positives, negatives, strict=True):
                for shape, answer in ((positive, "yes"), (negative, "no")):
                    per_setting[setting].append(
                        {
                            "question": f"Is there a {shape} in the image?",
                            "answer": answer,
                            "image_source": f"world_{split}_{image_index:06d}",
                            "image": image,
                            "category": setting,
                        }
                    )
    records = []
    for setting in POPE_SETTINGS:
        for number, row in enumerate(per_setting[setting], start=1):
            records.append({"id": str(len(records)), "question_id": str(number), **row})
    order = list(FEATURES["pope"])  # schema key order
    return [{key: row[key] for key in order} for row in records]


def pope_k(scene: Scene) -> int:
    """Questions per polarity for one image: min(3, #present, #absent shapes)."""
    n_present = len(scene.shapes_present())
    return min(POPE_MAX_PER_POLARITY, n_present, len(SHAPES) - n_present)


# --- 6. scienceqa_img -----------------------------------------------------------

_SQA_FAMILIES = (
    ask_which_present,
    ask_shape_at_cell,
    ask_colour_of_shape,
    ask_position_of_shape,
    ask_count_all,
)
_SQA_TOPIC = {
    "presence": "shapes",
    "shape": "shapes",
    "color": "colors",
    "position": "positions",
    "count": "counting",
}
_SQA_SKILL = {
    "presence": "Identify shapes",
    "shape": "Identify shapes",
    "color": "Identify colors",
    "position": "Find positions",
    "count": "Count shapes",
}
_SQA_LECTURE = {
    "presence": "Look at every part of the picture to see which shapes it shows.",
    "shape": "A shape can be a circle, a square, a triangle, a cross, a diamond or a "
    "ring.",
    "color": "Each shape in the picture has one color.",
    "position": "The picture has nine parts: three rows and three columns.",
    "count": "To count shapes, look at each part of the picture once.",
}


def build_scienceqa(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Multiple choice (2-5 choices, int answer), hint "" or a context sentence."""
    records = []
    questions = questions_per_scene(
        rng, pool, split, lambda s: ask_any(s, rng, _SQA_FAMILIES), lambda q: q.question
    )
    for scene, qa in itertools.islice(questions, n):
        qa = with_absent_distractors(scene, qa)
        choices, answer = multiple_choice(rng, qa, int(rng.integers(2, 6)))
        if rng.random() < 0.5:
            hint = ""
        else:
            hint = pick(
                rng,
                (
                    f"The picture shows {len(scene.objects)} shapes.",
                    "The shapes are on a dark background.",
                    "Look at the shapes in the picture.",
                ),
            )
        records.append(
            {
                "image": render(scene),
                "question": sentence(qa.question),
                "choices": choices,
                "answer": answer,
                "hint": hint,
                "task": "closed choice",
                "grade": pick(rng, ("grade1", "grade2", "grade3")),
                "subject": "natural science",
                "topic": _SQA_TOPIC[qa.kind],
                "category": _SQA_SKILL[qa.kind],
                "skill": _SQA_SKILL[qa.kind],
                "lecture": _SQA_LECTURE[qa.kind],
                "solution": f"The picture shows {caption(scene)} . "
                f"So the answer is {qa.answer}.",
            }
        )
    return {"scienceqa_img": records}


# --- 7. mmbench_en_dev ----------------------------------------------------------

MMBENCH_LETTERS = ("A", "B", "C", "D")
CIRCULAR_OFFSET = 1_000_000
_MMBENCH_CATEGORIES: dict[str, tuple[str, str]] = {
    # QA kind -> (category, L2-category)
    "color": ("attribute_recognition", "Fine-grained Perception (single-instance)"),
    "position": ("object_localization", "Fine-grained Perception (single-instance)"),
    "shape": ("spatial_relationship", "Fine-grained Perception (cross-instance)"),
    "number": ("ocr", "Fine-grained Perception (single-instance)"),
    "presence": ("image_scene", "Coarse Perception"),
}
_MMBENCH_FAMILIES = (
    ask_which_present,
    ask_colour_of_shape,
    ask_position_of_shape,
    ask_number,
)


def _ask_mmbench(scene: Scene, rng: np.random.Generator) -> QA | None:
    # Shape answers come only from relation questions (spatial_relationship).
    if rng.random() < 0.25:
        qa = ask_relation(scene, rng)
        if qa is not None and qa.kind == "shape":
            return qa
    return ask_any(scene, rng, _MMBENCH_FAMILIES)


def circular_copies(row: Record, n_options: int) -> list[Record]:
    """CircularEval copies k = 1..n-1 of an MMBench row.

    Copy k has index + k * 1e6 and options rotated left by k: the option at letter
    i is the original option at letter (i + k) mod n, so the gold index g moves to
    (g - k) mod n.
    """
    options = [row[letter] for letter in MMBENCH_LETTERS[:n_options]]
    gold = MMBENCH_LETTERS.index(row["answer"])
    copies = []
    for k in range(1, n_options):
        rotated = options[k:] + options[:k]
        copy = dict(row)
        copy["index"] = row["index"] + k * CIRCULAR_OFFSET
        for letter, option in zip(MMBENCH_LETTERS, rotated, strict=False):
            copy[letter] = option
        copy["answer"] = MMBENCH_LETTERS[(gold - k) % n_options]
        copies.append(copy)
    return copies


def build_mmbench(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """2-4 options (A-D, unused None) plus the CircularEval copies."""
    rows: list[Record] = []
    index = 0
    while len(rows) < n:
        scene, qa = draw_until(rng, pool, lambda s: _ask_mmbench(s, rng))
        qa = with_absent_distractors(scene, qa)
        n_options = int(rng.integers(2, 5))
        options, gold = multiple_choice(rng, qa, n_options)
        n_options = len(options)
        category, l2_category = _MMBENCH_CATEGORIES[qa.kind]
        hint = None
        if rng.random() < 0.4:
            hint = f"The image shows {len(scene.objects)} shapes on a dark background."
        row = {
            "index": index,
            "question": sentence(qa.question),
            "hint": hint,
            "answer": MMBENCH_LETTERS[gold],
            **{
                letter: options[i] if i < n_options else None
                for i, letter in enumerate(MMBENCH_LETTERS)
            },
            "category": category,
            "image": render(scene),
            "source": "mini_world",
            "L2-category": l2_category,
            "comment": None,
            "split": split,
        }
        rows.append(row)
        rows.extend(circular_copies(row, n_options))
        index += 1
    rows.sort(key=lambda r: r["index"])  # originals first, then copy 1, copy 2...
    order = list(FEATURES["mmbench_en_dev"])
    return {"mmbench_en_dev": [{key: r[key] for key in order} for r in rows]}


# --- 8. mme ---------------------------------------------------------------------

MME_PERCEPTION = ("existence", "count", "position", "color", "OCR")
MME_COGNITION = ("numerical_calculation",)
MME_SUFFIX = " Please answer yes or no."


def _noun(shape: str, n: int) -> str:
    return shape if n == 1 else SHAPE_PLURALS[shape]


def _mme_pair(
    category: str, scene: Scene, rng: np.random.Generator
) -> tuple[str, str] | None:
    """(question with answer Yes, question with answer No), without the suffix."""
    present = [s for s in SHAPES if s in scene.shapes_present()]
    absent = [s for s in SHAPES if s not in scene.shapes_present()]
    if category == "existence":
        yes_shape, no_shape = pick(rng, present), pick(rng, absent)
        return (
            f"Is there a {yes_shape} in this image?",
            f"Is there a {no_shape} in this image?",
        )
    if category == "count":
        shape = pick(rng, present)
        n = scene.count(shape)
        wrong = n + 1 if n == 1 or rng.random() < 0.5 else n - 1
        return (
            f"Is there a total of {n} {_noun(shape, n)} in the image?",
            f"Is there a total of {wrong} {_noun(shape, wrong)} in the image?",
        )
    if category == "position":
        shapes = scene.unique_shapes()
        if not shapes:
            return None
        shape = pick(rng, shapes)
        cell = scene.object_with_shape(shape)[2]
        wrong_cell = pick(rng, others(CELLS, cell))
        return (
            f"Is the {shape} at the {cell} of the image?",
            f"Is the {shape} at the {wrong_cell} of the image?",
        )
    if category == "color":
        shape, colour, _ = pick(rng, scene.objects)
        worn = {c for s, c, _ in scene.objects if s == shape}
        wrong_colour = pick(rng, [c for c in COLOURS if c not in worn])
        return (
            f"Is there a {colour} {shape} in the image?",
            f"Is there a {wrong_colour} {shape} in the image?",
        )
    if scene.digit is None:
        return None
    value = scene.digit[0]
    if category == "OCR":
        wrong_value = pick(rng, [d for d in range(10) if d != value])
        return (
            f"Is the number on the sign {value}?",
            f"Is the number on the sign {wrong_value}?",
        )
    if category == "numerical_calculation":
        added = int(rng.integers(1, 6))
        total = value + added
        # A wrong total nearby, never negative (total >= 1, so +1/+2 always fit).
        wrong_total = total + pick(rng, [d for d in (-2, -1, 1, 2) if total + d >= 0])
        return (
            f"Is the number on the sign plus {added} equal to {total}?",
            f"Is the number on the sign plus {added} equal to {wrong_total}?",
        )
    raise ValueError(f"unknown MME category {category!r}")


def build_mme(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Exactly two questions per image (Yes first, then No), sharing question_id."""
    categories = MME_PERCEPTION + MME_COGNITION
    per_category: Counter[str] = Counter()
    records = []
    while len(records) < n:
        category = pick(rng, categories)
        scene, (yes_q, no_q) = draw_until(
            rng, pool, lambda s, c=category: _mme_pair(c, s, rng)
        )
        question_id = f"{category}/{per_category[category]:04d}.png"
        per_category[category] += 1
        image = render(scene)
        for text, answer in ((yes_q, "Yes"), (no_q, "No")):
            records.append(
                {
                    "question_id": question_id,
                    "image": image,
                    "question": text + MME_SUFFIX,
                    "answer": answer,
                    "category": category,
                }
            )
    return {"mme": records}


# --- 9. mmmu_val ----------------------------------------------------------------

P_MMMU_OPEN = 0.1
_MMMU_SUBJECTS: dict[str, tuple[QAFamily, str]] = {
    "Math": (ask_count_all, "Counting"),
    "Art": (ask_colour_of_shape, "Colors"),
    "Geography": (ask_position_of_shape, "Positions"),
    "Biology": (ask_which_present, "Shapes"),
}
_MMMU_QUESTIONS = {
    "Math": "How many shapes are there in <image 1>?",
    "Art": "What color is the {subject} in <image 1>?",
    "Geography": "Where is the {subject} in <image 1>?",
    "Biology": "Which shape is in <image 1>?",
}


def build_mmmu(
    rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """~90% multiple-choice (letter answers), ~10% open; only image_1 is set."""
    subjects = tuple(_MMMU_SUBJECTS)
    per_subject: Counter[str] = Counter()
    records = []

    def ask(scene: Scene) -> tuple[str, QA] | None:
        subject = pick(rng, subjects)
        qa = _MMMU_SUBJECTS[subject][0](scene, rng)
        return None if qa is None else (subject, qa)

    questions = questions_per_scene(rng, pool, split, ask, lambda q: q[1].question)
    for scene, (subject, qa) in itertools.islice(questions, n):
        subfield = _MMMU_SUBJECTS[subject][1]
        qa = with_absent_distractors(scene, qa)
        per_subject[subject] += 1
        question = _MMMU_QUESTIONS[subject].format(subject=qa.subject)
        if rng.random() < P_MMMU_OPEN:
            question_type, options, answer = "open", "[]", qa.answer
        else:
            choices, gold = multiple_choice(rng, qa, int(rng.integers(2, 5)))
            question_type, options = "multiple-choice", repr(choices)
            answer = "ABCDEFGHI"[gold]
        records.append(
            {
                "id": f"{split}_{subject}_{per_subject[subject]}",
                "question": question,
                "options": options,
                "explanation": "",
                "image_1": render(scene),
                **{f"image_{k}": None for k in range(2, 8)},
                "img_type": "['Diagrams']",
                "answer": answer,
                "topic_difficulty": ("Easy", "Medium", "Hard")[len(scene.objects) - 2],
                "question_type": question_type,
                "subfield": subfield,
            }
        )
    return {"mmmu_val": records}


# --- dispatch -------------------------------------------------------------------

Builder = Callable[[np.random.Generator, int, str, str], dict[str, list[Record]]]
BUILDERS: dict[str, Builder] = {
    "ok_vqa_val2014": build_ok_vqa,
    "vizwiz_vqa_val": build_vizwiz,
    "textvqa_val": build_textvqa,
    "gqa": build_gqa,
    "pope": build_pope,
    "scienceqa_img": build_scienceqa,
    "mmbench_en_dev": build_mmbench,
    "mme": build_mme,
    "mmmu_val": build_mmmu,
}


def build_task(
    task: str, rng: np.random.Generator, n: int, split: str, pool: str
) -> dict[str, list[Record]]:
    """Records of one task: ``{dataset_dir: records}`` for split name ``split``.

    ``pool`` ("eval", "calib" or "train") selects which scenes may be used.
    """
    if task not in BUILDERS:
        raise KeyError(f"unknown task {task!r}; expected one of {TASKS}")
    if n < 1:
        raise ValueError(f"need at least one item for {task!r}, got n={n}")
    return BUILDERS[task](rng, n, split, pool)
