"""mmbench_en_dev: MMBench-EN dev (4,329 rows = 1,164 questions + CircularEval copies).

A copy of question q has ``index = q + k * 1,000,000`` and rotated options. Each row's
answer is turned into a letter by lmms-eval's rule-based ``can_infer``
(``extract_letter``). A question is a hit only if every row of its group (all rows
with ``index % 1e6 == q``) resolves to its own gold letter (CircularEval).

No external judge is ever called. lmms-eval sends rows that no rule can parse to a
GPT judge, and without a reachable judge gives them a random letter; here such rows
count as wrong, and ``aggregate`` reports how many there were (``unparsed_rows``) and
how many questions lmms-eval would have left to the judge (``judge_dependent_groups``).
Whenever ``judge_dependent_groups`` is 0 (normal for LLaVA-style single-letter
answers) the score equals lmms-eval's exactly.

Because of CircularEval no per-row score is final: ``score()`` stores the extracted
letter and sets ``"score"`` to 1.0/0.0 for whether this row alone is right.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from atvprune.benchmarks.base import (
    BenchmarkSpec,
    check_fields,
    check_mode,
    check_records,
    doc_label,
    is_missing,
    require_str,
    single_image,
    strip_prediction,
)

TASK = BenchmarkSpec(
    name="mmbench_en_dev",
    dataset_path="lmms-lab/MMBench",
    dataset_name="en",
    split="dev",
    max_new_tokens=1024,
    until=("ASSISTANT:",),
    headline_metric="gpt_eval_score",
    headline_scale=1.0,
    metrics=("gpt_eval_score",),
    answer_field="answer",
)

OPTIONS_HEADER = "There are several options:"
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
PROMPT_LETTERS = "ABCDE"  # letters the prompt may list
TEXT_MATCH_LETTERS = "ABCD"  # lmms-eval's build_choices: option texts used by step 4
LETTER_TOKENS = "ABCDE"  # can_infer_option looks for these letters (num_choice=5)
CIRCULAR_STRIDE = 1_000_000
API_FAILURE_TEXT = "Failed to obtain answer via API"

# Step 3 of can_infer: (prefix, suffix) around the letter, tried in this order.
_LETTER_PATTERNS = (
    ("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
    (":", ""), (":", ","), (":", "."), (":", ")"), (":", ")."),
)  # fmt: skip


def visuals(doc: Mapping[str, Any]) -> list[Image.Image]:
    """``[doc["image"]]`` in RGB (the ``NUM_IMAGE=2`` variant is not modelled)."""
    return single_image(doc, TASK.name)


def options_block(doc: Mapping[str, Any]) -> str:
    """ "There are several options:" then one "{L}. {text}" line per letter A..E whose
    value exists and is not None/NaN/empty/"nan"; no trailing newline."""
    lines = [OPTIONS_HEADER]
    for letter in PROMPT_LETTERS:
        value = doc.get(letter)
        if is_missing(value) or not value or value == "nan":
            continue
        lines.append(f"{letter}. {value}")
    return "\n".join(lines)


def prompt(doc: Mapping[str, Any]) -> str:
    """``"{hint} {question} {options}"`` (hint only if not None/NaN/"nan"; single
    spaces, no labels), then "\\n" + POST_PROMPT, i.e. a blank line before the
    instruction. (As in lmms-eval, an empty-string hint still adds a leading space.)
    """
    check_fields(doc, ["question", "hint"], TASK.name)
    question = require_str(doc, "question", TASK.name)
    hint = doc["hint"]
    if is_missing(hint) or hint == "nan":
        query = f"{question} {options_block(doc)}"
    else:
        query = f"{hint} {question} {options_block(doc)}"
    return f"{query}\n{POST_PROMPT}"


def _count_letters(tokens: list[str], prefix: str = "", suffix: str = "") -> int:
    return sum(1 for letter in LETTER_TOKENS if prefix + letter + suffix in tokens)


def _letter_from_tokens(prediction: str) -> str | None:
    """Steps 2-3 of can_infer (lmms-eval ``can_infer_option``)."""
    if API_FAILURE_TEXT in prediction:
        return None
    tokens = prediction.split()
    # Step 2: exactly one bare letter token, unless "A" may be the article.
    if _count_letters(tokens) == 1 and not ("A" in tokens and len(tokens) > 3):
        for letter in LETTER_TOKENS:
            if letter in tokens:
                return letter
    # Step 3: the first pattern with exactly one letter wins.
    for prefix, suffix in _LETTER_PATTERNS:
        if _count_letters(tokens, prefix, suffix) == 1:
            for letter in LETTER_TOKENS:
                if prefix + letter + suffix in tokens:
                    return letter
    return None


def _letter_from_text(prediction: str, options: Mapping[str, Any]) -> str | None:
    """Step 4 of can_infer (``can_infer_text``): the one option whose lowercased text
    is a substring of the lowercased prediction."""
    lowered = prediction.lower()
    found = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return found[0] if len(found) == 1 else None


def extract_letter(prediction: str, options: Mapping[str, Any]) -> str | None:
    """lmms-eval's rule-based ``can_infer(prediction, options)``; None if no rule fits.

    ``options`` maps each existing option letter to its text. Steps:
      1. the text contains "Failed to obtain answer via API": the letter steps 2-3
         are skipped (lmms-eval still runs step 4 afterwards, and so do we);
      2. exactly one of A-E occurs as a whitespace-separated token -> that letter,
         except when "A" is a token and there are more than 3 tokens;
      3. token patterns X. X, X: X) X). (X) (X). :X :X, :X. :X) :X). in this order;
         the first with exactly one letter wins;
      4. exactly one option text (lowercased) is a substring of the lowercased
         prediction -> its letter ("hot dog" -> "dog", "not sure" -> "no");
      5. otherwise None.
    Lowercase letters never match; "E" is accepted even with 4 options.
    """
    for letter in options:
        if letter not in PROMPT_LETTERS:
            raise ValueError(f"{TASK.name}: option letter {letter!r} is not in A-E")
    letter = _letter_from_tokens(prediction)
    if letter is not None:
        return letter
    return _letter_from_text(prediction, options)


def scoring_options(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Option texts step 4 may match: A-D whose value is not None/NaN (lmms-eval's
    ``build_choices``; unlike the prompt it keeps "" and "nan", and never uses E)."""
    return {
        letter: doc[letter]
        for letter in TEXT_MATCH_LETTERS
        if letter in doc and not is_missing(doc[letter])
    }


def _as_index(value: Any, doc: Mapping[str, Any]) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(
            f"{TASK.name}: doc {doc_label(doc)} has a non-integer index {value!r}"
        )
    return value.__index__()


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Per-row record: extracted letter (or None), gold, index and categories.

    ``"score"`` is 1.0 iff this row alone resolves to its gold letter; the benchmark
    score needs the whole CircularEval group (``aggregate``). Both modes are
    identical; ``rng`` is unused (no random judge fallback).
    """
    check_mode(mode, TASK.name)
    check_fields(doc, ["index", "answer", "category", "L2-category"], TASK.name)
    gold = require_str(doc, "answer", TASK.name)
    stripped = strip_prediction(prediction, doc, TASK.name)
    letter = extract_letter(stripped, scoring_options(doc))
    return {
        "index": _as_index(doc["index"], doc),
        "category": doc["category"],
        "l2_category": doc["L2-category"],
        "prediction": stripped,
        "extracted": letter,
        "answer": gold,
        "score": 1.0 if letter == gold else 0.0,
    }


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """CircularEval without a judge.

    For each main row (index < 1e6, in index order) its group is every row with
    ``index % 1e6`` equal to its index; the question is a hit iff every row of the
    group has ``extracted == answer`` (an unparsed row counts as wrong).
        gpt_eval_score = 100 * hits / main questions                     (0-100)
    Also returned: ``category_scores`` and ``l2_category_scores`` (hit rate x100 per
    category of the main row), ``unparsed_rows`` (rows with no extracted letter) and
    ``judge_dependent_groups`` (questions with no wrongly resolved row but at least
    one unparsed row: lmms-eval would have asked its judge or guessed).
    """
    check_records(records, TASK.name)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    seen: set[int] = set()
    for record in records:
        index = record["index"]
        if index in seen:
            raise ValueError(f"{TASK.name}: index {index} occurs twice")
        seen.add(index)
        groups.setdefault(index % CIRCULAR_STRIDE, []).append(record)
    main_rows = sorted(
        (record for record in records if record["index"] < CIRCULAR_STRIDE),
        key=lambda record: record["index"],
    )
    if not main_rows:
        raise ValueError(f"{TASK.name}: no main rows (index < {CIRCULAR_STRIDE})")
    hits: list[int] = []
    judge_dependent = 0
    for main in main_rows:
        group = groups[main["index"]]
        wrong = any(
            row["extracted"] is not None and row["extracted"] != row["answer"]
            for row in group
        )
        unparsed = any(row["extracted"] is None for row in group)
        judge_dependent += (not wrong) and unparsed
        hits.append(int(not wrong and not unparsed))
    return {
        "gpt_eval_score": sum(hits) / len(hits) * 100,
        "category_scores": _hit_rates(main_rows, hits, "category"),
        "l2_category_scores": _hit_rates(main_rows, hits, "l2_category"),
        "unparsed_rows": sum(1 for record in records if record["extracted"] is None),
        "judge_dependent_groups": judge_dependent,
    }


def _hit_rates(
    main_rows: list[Mapping[str, Any]], hits: list[int], field: str
) -> dict[str, float]:
    """Hit rate x100 per value of ``field``, keys sorted (pandas groupby order)."""
    by_value: dict[str, list[int]] = {}
    for row, hit in zip(main_rows, hits, strict=True):
        by_value.setdefault(row[field], []).append(hit)
    ordered = sorted(by_value.items(), key=lambda item: str(item[0]))
    return {value: sum(group) / len(group) * 100 for value, group in ordered}
