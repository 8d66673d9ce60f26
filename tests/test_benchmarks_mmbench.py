"""mmbench_en_dev: prompt, rule-based letter extraction (can_infer), CircularEval."""

import pytest

from atvprune.benchmarks import mmbench_en_dev as mmbench
from atvprune.benchmarks.mmbench_en_dev import extract_letter

POST = "\n\nAnswer with the option's letter from the given choices directly."


def _doc(**overrides):
    doc = {
        "index": 12,
        "question": "What animal is shown?",
        "hint": None,
        "A": "cat",
        "B": "dog",
        "C": None,
        "D": None,
        "answer": "B",
        "category": "object_localization",
        "L2-category": "FP-S",
    }
    doc.update(overrides)
    return doc


# ---------------------------------------------------------------------- prompt
def test_prompt_without_hint():
    assert mmbench.prompt(_doc()) == (
        "What animal is shown? There are several options:\nA. cat\nB. dog" + POST
    )


def test_prompt_with_hint_and_skipped_options():
    doc = _doc(hint="Look closely.", C="nan", D="", E="bird")
    assert mmbench.prompt(doc) == (
        "Look closely. What animal is shown? There are several options:"
        "\nA. cat\nB. dog\nE. bird" + POST
    )


@pytest.mark.parametrize("hint", [None, float("nan"), "nan"])
def test_prompt_missing_hint_forms(hint):
    assert mmbench.prompt(_doc(hint=hint)).startswith("What animal is shown? There")


# ------------------------------------------------------------- extract_letter
CAT_DOG = {"A": "cat", "B": "dog"}


@pytest.mark.parametrize(
    ("prediction", "options", "expected"),
    [
        ("B", CAT_DOG, "B"),
        ("The answer is B", CAT_DOG, "B"),  # step 2: one bare letter token
        ("A dog", CAT_DOG, "A"),  # "A" with <= 3 tokens is taken as the letter
        ("The answer is A", CAT_DOG, None),  # step 2 skipped: "A" may be the article
        ("The answer is A.", CAT_DOG, "A"),  # ... but step 3 finds "A."
        ("B B", CAT_DOG, "B"),  # one distinct letter
        ("A or B", CAT_DOG, None),  # two letters, no pattern, no option text
        ("B) dog", CAT_DOG, "B"),
        ("(A)", CAT_DOG, "A"),
        ("answer:C.", CAT_DOG, None),  # ":C." is not a whole token
        ("answer :C.", CAT_DOG, "C"),  # step 3, pattern :X.
        ("E", CAT_DOG, "E"),  # accepted even with 2 options
        ("b", CAT_DOG, None),  # lowercase letters never match
        ("hot dog", CAT_DOG, "B"),  # step 4: option text in the prediction
        ("not sure", {"A": "yes", "B": "no"}, "B"),  # "no" is in "not sure"
        ("a cat and a dog", CAT_DOG, None),  # two option texts
        ("", CAT_DOG, None),
        ("Failed to obtain answer via API", CAT_DOG, None),
        # letter steps are skipped on the API-failure text, the text step still runs
        ("Failed to obtain answer via API: B", {"A": "cat", "B": "api"}, "B"),
    ],
)
def test_extract_letter(prediction, options, expected):
    assert extract_letter(prediction, options) == expected


def test_extract_letter_rejects_bad_option_letters():
    with pytest.raises(ValueError, match="'F'"):
        extract_letter("A", {"F": "fish"})


def test_score_uses_only_existing_a_to_d_option_texts():
    # option E is shown in the prompt but never text-matched (lmms-eval build_choices)
    record = mmbench.score(_doc(E="bird", answer="A"), "a bird")
    assert record["extracted"] is None and record["score"] == 0.0
    record = mmbench.score(_doc(), "  It is a dog.\n")
    assert record["extracted"] == "B" and record["score"] == 1.0
    assert record["prediction"] == "It is a dog."
    assert record["index"] == 12 and record["l2_category"] == "FP-S"


def test_score_index_must_be_an_integer():
    assert mmbench.score(_doc(index="42"), "B")["index"] == 42
    with pytest.raises(ValueError, match="non-integer index"):
        mmbench.score(_doc(index=1.5), "B")


# ---------------------------------------------------------------- CircularEval
def _row(index, answer, extracted, category="cat1"):
    return {
        "index": index,
        "answer": answer,
        "extracted": extracted,
        "category": category,
        "l2_category": "L2",
    }


def test_circular_eval_groups():
    records = [
        # question 1: main + 2 rotated copies, all right -> hit
        _row(1, "A", "A"),
        _row(1_000_001, "B", "B"),
        _row(2_000_001, "C", "C"),
        # question 2: main right, copy wrong -> miss
        _row(2, "A", "A", category="cat2"),
        _row(1_000_002, "C", "A", category="cat2"),
        # question 3: main right, copy unparsed -> miss (no judge), judge-dependent
        _row(3, "D", "D", category="cat2"),
        _row(1_000_003, "A", None, category="cat2"),
        # question 4: wrong row and unparsed row -> miss, not judge-dependent
        _row(4, "B", "C"),
        _row(1_000_004, "B", None),
    ]
    result = mmbench.aggregate(records)
    assert result["gpt_eval_score"] == 25.0  # 1 hit of 4 questions, 0-100
    assert result["category_scores"] == {"cat1": 50.0, "cat2": 0.0}
    assert result["l2_category_scores"] == {"L2": 25.0}
    assert result["unparsed_rows"] == 2
    assert result["judge_dependent_groups"] == 1


def test_circular_eval_ignores_order_and_orphan_copies():
    records = [_row(1_000_005, "B", "B"), _row(5, "A", "A"), _row(2_000_009, "A", "C")]
    assert mmbench.aggregate(records)["gpt_eval_score"] == 100.0


def test_circular_eval_errors():
    with pytest.raises(ValueError, match="index 5 occurs twice"):
        mmbench.aggregate([_row(5, "A", "A"), _row(5, "A", "A")])
    with pytest.raises(ValueError, match="no main rows"):
        mmbench.aggregate([_row(1_000_005, "A", "A")])
