"""mmmu_val: MMMU validation (900 questions, 30 subjects), official MMMU parsing.

Visuals: the ``<image k>`` tags of the question (and, for multiple-choice, of the
options) name the fields ``image_k`` to show; the tags stay in the prompt literally.

Multiple-choice answers go through ``parse_choice`` (the official MMMU rule, with a
random letter when nothing can be parsed) and are right iff the letter is the gold.

Open answers go through ``parse_open``. Scoring modes differ only there:
- "original" (MMMU's own evaluator, lmms-eval up to v0.3.0): right if any string
  candidate contains a string gold (substring: "cat" is in "concatenate") or any
  number candidate equals a number gold (both rounded to 2 decimals);
- "lmms-eval-0.4" (the bug since 2025-06-23, in v0.3.5-v0.5 and HEAD): lmms-eval keeps
  only ``str(first candidate)`` and the checker then walks that string character by
  character, so no gold of length >= 2 can match: every open question is wrong
  (unless the gold is empty). lmms-eval's "first" candidate is the first element of a
  Python set (hash-order dependent); we use the first in order of appearance, which
  cannot change the outcome.

Random fallback: lmms-eval calls the global ``random.choice`` (python ``random``
seeded with 0 at start-up) whenever a multiple-choice answer cannot be parsed. Pass
``score`` one ``random.Random(0)`` per benchmark run and score the docs in dataset
order (as the evaluator does) to reproduce that sequence; with ``rng=None`` a fresh
``random.Random(0)`` is used for that call.

Aggregate: accuracy per subject, then ``mmmu_acc`` = instance-weighted overall
accuracy (0-1), rounded to 5 decimals.
"""

from __future__ import annotations

import ast
import random
import re
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
    load_rgb,
    require_str,
    strip_prediction,
)

TASK = BenchmarkSpec(
    name="mmmu_val",
    dataset_path="lmms-lab/MMMU",
    dataset_name=None,
    split="validation",
    max_new_tokens=16,  # v0.4 YAML (HEAD since 2025-12-14 uses 128)
    # The YAML gives generation_kwargs without `until`, so lmms-eval adds "\n\n".
    until=("\n\n",),
    headline_metric="mmmu_acc",
    headline_scale=100.0,
    metrics=("mmmu_acc",),
    answer_field="answer",
)

MULTIPLE_CHOICE = "multiple-choice"
OPEN = "open"
MULTIPLE_CHOICE_PROMPT = (
    "Answer with the option's letter from the given choices directly."
)
OPEN_PROMPT = "Answer the question using a single word or phrase."

_IMAGE_TAG = re.compile(r"<image \d+>")
# parse_choice strips these from both ends, one character kind after the other.
_EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
# parse_open: words after which the answer may follow ("=" only in the last piece).
_ANSWER_INDICATORS = (
    "could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ",
)  # fmt: skip
_TRIVIAL_TAILS = (":", ",", ".", "!", "?", ";", "'")
_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")

DISCIPLINES = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Humanities and Social Science": (
        "History",
        "Literature",
        "Sociology",
        "Psychology",
    ),
    "Tech and Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
}


# ----------------------------------------------------------------------------- docs
def question_type(doc: Mapping[str, Any]) -> str:
    """``"multiple-choice"`` or ``"open"``; ValueError for anything else."""
    check_fields(doc, ["question_type"], TASK.name)
    kind = doc["question_type"]
    if kind not in (MULTIPLE_CHOICE, OPEN):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} has question_type {kind!r}, "
            f"expected {MULTIPLE_CHOICE!r} or {OPEN!r}"
        )
    return kind


def options_of(doc: Mapping[str, Any]) -> list[str]:
    """The option list; the dataset stores it as the Python repr of a list."""
    check_fields(doc, ["options"], TASK.name)
    raw = doc["options"]
    options = raw
    if isinstance(raw, str):
        try:
            options = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as error:
            raise ValueError(
                f"{TASK.name}: doc {doc_label(doc)} field 'options' is not a list "
                f"literal: {raw!r}"
            ) from error
    if not isinstance(options, list | tuple) or not all(
        isinstance(option, str) for option in options
    ):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} field 'options' must be a list of "
            f"strings, got {raw!r}"
        )
    return list(options)


def _letters(count: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(count)]


def _build_prompt(doc: Mapping[str, Any], choice_prompt: str, open_prompt: str) -> str:
    """lmms-eval ``construct_prompt``."""
    check_fields(doc, ["question"], TASK.name)
    question = require_str(doc, "question", TASK.name)
    if question_type(doc) == MULTIPLE_CHOICE:
        options = options_of(doc)
        listing = "\n".join(
            f"{letter}. {option}"
            for letter, option in zip(_letters(len(options)), options, strict=True)
        )
        return f"{question}\n{listing}\n\n{choice_prompt}"
    return f"{question}\n\n{open_prompt}"


def image_fields(doc: Mapping[str, Any]) -> list[str]:
    """Fields named by the ``<image k>`` tags, de-duplicated and sorted (as strings,
    like lmms-eval)."""
    tags = _IMAGE_TAG.findall(_build_prompt(doc, "", ""))
    return sorted({tag.strip("<>").replace(" ", "_") for tag in tags})


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``doc["image_k"]`` in RGB for every tag ``<image k>`` (see ``image_fields``)."""
    images = []
    for field in image_fields(doc):
        check_fields(doc, [field], TASK.name)
        images.append(load_rgb(doc[field], doc, field, TASK.name))
    return images


def prompt(doc: Mapping[str, Any]) -> str:
    """Multiple-choice: ``"{question}\\n{A. o1\\nB. o2...}\\n\\n"`` + the letter
    instruction; open: ``"{question}\\n\\n"`` + the short-answer instruction.
    The ``<image k>`` tags are kept literally."""
    return _build_prompt(doc, MULTIPLE_CHOICE_PROMPT, OPEN_PROMPT)


def subject_of(doc_id: str) -> str:
    """ "validation_Art_Theory_12" -> "Art_Theory" (lmms-eval extract_subset_name)."""
    split = doc_id.split("_")[0]
    match = re.search(rf"^{re.escape(split)}_(.+?)_\d+$", doc_id)
    if match is None:
        raise ValueError(f"{TASK.name}: cannot read a subject from id {doc_id!r}")
    return match.group(1)


# ------------------------------------------------------------------ multiple choice
def parse_choice(
    response: str, options: Sequence[str], rng: random.Random | None = None
) -> str:
    """The official MMMU multiple-choice parse; returns a letter (A = options[0]).

    1. strip , . ! ? ; : ' from both ends (one character kind after the other, in
       that order) and pad the text with a space on each side;
    2. candidates: letters written "(X)"; if none, letters followed by a space
       ("X "); if none, "X.";
    3. if still none and the text has more than 5 words: the options whose text
       (lowercased) occurs in the lowercased response;
    4. several candidates: the one whose last occurrence is furthest right ("(X)",
       " X " or the option text, by how they were found; ties -> first candidate);
    5. no candidate: ``rng.choice`` over the letters (``random.Random(0)`` if None).
    """
    letters = _letters(len(options))
    if not letters:
        raise ValueError(f"{TASK.name}: parse_choice needs at least one option")
    for char in _EDGE_PUNCTUATION:
        response = response.strip(char)
    padded = f" {response} "

    candidates = [letter for letter in letters if f"({letter})" in padded]
    bracketed = bool(candidates)
    if not candidates:
        candidates = [letter for letter in letters if f"{letter} " in padded]
    if not candidates:
        candidates = [letter for letter in letters if f"{letter}." in padded]
    by_text = False
    if not candidates and len(padded.split()) > 5:
        option_of = dict(zip(letters, options, strict=True))
        candidates = [
            letter for letter in letters if option_of[letter].lower() in padded.lower()
        ]
        by_text = bool(candidates)

    if not candidates:
        if rng is None:
            rng = random.Random(0)
        return rng.choice(letters)
    if len(candidates) == 1:
        return candidates[0]
    if by_text:
        positions = [padded.lower().rfind(option_of[c].lower()) for c in candidates]
    elif bracketed:
        positions = [padded.rfind(f"({c})") for c in candidates]
    else:
        positions = [padded.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))]  # first max, like np.argmax


# ------------------------------------------------------------------------- open
def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_candidate(text: str) -> list[str | float]:
    """MMMU ``normalize_str``: numbers (commas removed) -> float rounded to 2
    decimals; other strings lowercased, a 1-char string s -> [" s", "s "]."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    if len(text) == 1:
        return [" " + text, text + " "]
    return [text]


def extract_numbers(text: str) -> list[str]:
    """Comma-grouped numbers, then scientific notation, then plain numbers (a plain
    number immediately followed by a comma or digit is skipped)."""
    return (
        _NUMBER_WITH_COMMAS.findall(text)
        + _NUMBER_SCIENTIFIC.findall(text)
        + _NUMBER_SIMPLE.findall(text)
    )


def _answer_tails(response: str) -> list[str]:
    """MMMU ``get_key_subresponses``: the shortest tail after an indicator word in
    each line, or the whole (lowercased) response if no line has one."""
    text = response.strip().strip(".").lower()
    # The ". " + capital-letter split can never fire after lowercasing; kept as is.
    pieces = re.split(r"\.\s(?=[A-Z])|\n", text)
    tails = []
    for position, piece in enumerate(pieces):
        indicators = _ANSWER_INDICATORS
        if position == len(pieces) - 1:
            indicators = (*_ANSWER_INDICATORS, "=")
        shortest: str | None = None
        for indicator in indicators:
            if indicator not in piece:
                continue
            tail = piece.split(indicator)[-1].strip()
            # An empty tail counts as "not found yet" and is replaced by the next one.
            if not shortest or len(tail) < len(shortest):
                shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL_TAILS:
            tails.append(shortest)
    return tails if tails else [text]


def parse_open(response: str) -> list[str | float]:
    """MMMU ``parse_open_response``: the normalized candidates of an open answer.

    Candidates are the answer tails (``_answer_tails``) plus every number found in
    them, each normalized (``normalize_candidate``), de-duplicated keeping the first
    occurrence (MMMU uses a set, whose order is arbitrary).
    """
    tails = _answer_tails(response)
    raw = list(tails)
    for tail in tails:
        raw.extend(extract_numbers(tail))
    normalized: list[str | float] = []
    for item in raw:
        normalized.extend(normalize_candidate(item))
    return list(dict.fromkeys(normalized))


def open_is_correct(gold: str, candidates: Sequence[str | float]) -> bool:
    """MMMU ``eval_open``: a string candidate containing a string gold, or a number
    candidate equal to a number gold (gold normalized like the candidates)."""
    golds = normalize_candidate(gold)
    for candidate in candidates:
        if isinstance(candidate, str):
            if any(isinstance(g, str) and g in candidate for g in golds):
                return True
        elif candidate in golds:
            return True
    return False


# ------------------------------------------------------------------------ score
def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Record with ``"score"`` 1.0/0.0, the parsed answer and the subject.

    ``"parsed"`` is the letter (multiple-choice) or the candidate list (open); for
    open questions ``"lmms_eval_parsed"`` is the single string lmms-eval v0.4 keeps.
    """
    check_mode(mode, TASK.name)
    check_fields(doc, ["id", "answer"], TASK.name)
    kind = question_type(doc)
    gold = require_str(doc, "answer", TASK.name)
    stripped = strip_prediction(prediction, doc, TASK.name)
    record: dict[str, Any] = {
        "id": doc["id"],
        "subject": subject_of(require_str(doc, "id", TASK.name)),
        "question_type": kind,
        "prediction": stripped,
        "answer": gold,
    }
    if kind == MULTIPLE_CHOICE:
        letter = parse_choice(stripped, options_of(doc), rng)
        record["parsed"] = letter
        correct = letter == gold
    else:
        candidates = parse_open(stripped)
        kept = str(candidates[0]) if candidates else ""
        record["parsed"] = candidates
        record["lmms_eval_parsed"] = kept
        if mode == LMMS_EVAL_MODE:
            # The bug: the checker iterates over the characters of one string.
            correct = open_is_correct(gold, list(kept))
        else:
            correct = open_is_correct(gold, candidates)
    record["score"] = 1.0 if correct else 0.0
    return record


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``mmmu_acc`` (0-1, 5 decimals) = sum_s acc_s * n_s / sum_s n_s over subjects s,
    plus ``subject_scores`` and ``discipline_scores`` (each rounded to 5 decimals)."""
    check_records(records, TASK.name)
    scores_by_subject: dict[str, list[float]] = {}
    for record in records:
        scores_by_subject.setdefault(record["subject"], []).append(record["score"])
    # Same float operations, in the same order, as lmms-eval.
    accuracy = {s: sum(v) / len(v) for s, v in scores_by_subject.items()}
    count = {s: len(v) for s, v in scores_by_subject.items()}

    def weighted(subjects: Sequence[str]) -> float:
        total, n = 0.0, 0
        for subject in subjects:
            total += accuracy[subject] * count[subject]
            n += count[subject]
        return total / n if n else 0.0

    disciplines = {}
    for discipline, subjects in DISCIPLINES.items():
        present = [subject for subject in subjects if subject in accuracy]
        if present:
            disciplines[discipline] = round(weighted(present), 5)
    return {
        "mmmu_acc": round(weighted(list(accuracy)), 5),
        "subject_scores": {s: round(a, 5) for s, a in accuracy.items()},
        "discipline_scores": disciplines,
    }
