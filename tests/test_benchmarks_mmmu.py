"""mmmu_val: prompt, visuals, MMMU answer parsing, the v0.4 open-question bug."""

import random

import pytest
from PIL import Image

from atvprune.benchmarks import mmmu_val as mmmu
from atvprune.benchmarks.mmmu_val import parse_choice, parse_open

FRUITS = ["apple", "banana", "cherry"]


def _image(value):
    return Image.new("L", (2, 2), value)


def _mc_doc(**overrides):
    doc = {
        "id": "validation_Art_Theory_3",
        "question": "Which painting is <image 1>? Compare with <image 1>.",
        "options": "['Mona Lisa', 'The Scream', '<image 2>']",
        "question_type": "multiple-choice",
        "answer": "B",
        "image_1": _image(10),
        "image_2": _image(20),
        "image_3": None,
    }
    doc.update(overrides)
    return doc


def _open_doc(answer, **overrides):
    doc = {
        "id": "validation_Math_7",
        "question": "What is the area of <image 1>?",
        "options": "[]",
        "question_type": "open",
        "answer": answer,
        "image_1": _image(30),
    }
    doc.update(overrides)
    return doc


# ------------------------------------------------------------- prompt, visuals
def test_multiple_choice_prompt_keeps_tags():
    assert mmmu.prompt(_mc_doc()) == (
        "Which painting is <image 1>? Compare with <image 1>.\n"
        "A. Mona Lisa\nB. The Scream\nC. <image 2>\n\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_open_prompt():
    assert mmmu.prompt(_open_doc("4")) == (
        "What is the area of <image 1>?\n\n"
        "Answer the question using a single word or phrase."
    )


def test_visuals_follow_the_tags_in_question_and_options():
    images = mmmu.visuals(_mc_doc())
    assert [image.getpixel((0, 0)) for image in images] == [(10,) * 3, (20,) * 3]
    # options are not scanned for open questions (lmms-eval construct_prompt)
    open_doc = _open_doc("4", options="['<image 2>']", image_2=_image(99))
    assert len(mmmu.visuals(open_doc)) == 1


def test_visuals_missing_image_names_doc_and_field():
    with pytest.raises(
        ValueError, match=r"validation_Art_Theory_3.*'image_2'.*missing"
    ):
        mmmu.visuals(_mc_doc(image_2=None))
    with pytest.raises(ValueError, match=r"missing field 'image_9'"):
        mmmu.visuals(_mc_doc(question="See <image 9>."))


def test_bad_docs():
    with pytest.raises(ValueError, match="question_type 'yes-no'"):
        mmmu.prompt(_mc_doc(question_type="yes-no"))
    with pytest.raises(ValueError, match="not a list literal"):
        mmmu.prompt(_mc_doc(options="[unclosed"))
    with pytest.raises(ValueError, match="cannot read a subject"):
        mmmu.score(_mc_doc(id="Art-3"), "B")


# -------------------------------------------------------- multiple-choice parse
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"),
        ("B.", "B"),  # edge punctuation stripped
        ("(C) cherry", "C"),
        ("It is (A), not (B)", "B"),  # last bracketed letter wins
        ("A. apple", "A"),  # "X." rule
        ("C is right, not A", "A"),  # letters followed by a space; rightmost " A "
        ("I am quite sure it is the banana here", "B"),  # > 5 words: option text
        ("apple is worse than the banana, I think", "B"),  # rightmost option text
    ],
)
def test_parse_choice(response, expected):
    assert parse_choice(response, FRUITS) == expected


@pytest.mark.parametrize("response", ["b", "C) cherry", "banana", "$30", ""])
def test_parse_choice_random_fallback(response):
    # seed 1 draws "A", seed 0 draws "B": neither "b", "C) cherry" nor "banana" parses
    assert parse_choice(response, FRUITS, random.Random(1)) == "A"
    assert parse_choice(response, FRUITS, random.Random(0)) == "B"
    assert parse_choice(response, FRUITS) == "B"  # rng=None -> Random(0)


def test_parse_choice_fallback_consumes_one_shared_rng():
    rng = random.Random(0)
    draws = [parse_choice("nothing", FRUITS, rng) for _ in range(6)]
    reference = random.Random(0)
    assert draws == [reference.choice(["A", "B", "C"]) for _ in range(6)]
    # parsed answers do not draw
    rng = random.Random(0)
    parse_choice("B", FRUITS, rng)
    assert rng.random() == random.Random(0).random()


def test_parse_choice_needs_options():
    with pytest.raises(ValueError, match="at least one option"):
        parse_choice("A", [])


# ------------------------------------------------------------------ open parse
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The answer is 42.", [42.0]),
        ("Paris", ["paris"]),
        ("x", [" x", "x "]),
        ("so the area = 12 m", ["12 m", 12.0]),
        ("1,000 apples", ["1,000 apples", 1000.0, 0.0]),  # "000" after the comma
        ("Thus 3.14159", [3.14]),
        ("first line is red\nso it is blue", ["red", "blue"]),
    ],
)
def test_parse_open(response, expected):
    assert parse_open(response) == expected


# ------------------------------------------------------------ scoring and modes
def test_multiple_choice_scoring_is_the_same_in_both_modes():
    for mode in ("lmms-eval-0.4", "original"):
        record = mmmu.score(_mc_doc(), " (B) The Scream\n", mode=mode)
        assert record["score"] == 1.0 and record["parsed"] == "B"
        assert record["subject"] == "Art_Theory"
        assert mmmu.score(_mc_doc(), "A", mode=mode)["score"] == 0.0


@pytest.mark.parametrize(
    ("gold", "response", "original"),
    [
        ("Paris", "Paris", 1.0),
        ("cat", "concatenate", 1.0),  # substring semantics
        ("14", "14.004", 1.0),  # numbers rounded to 2 decimals
        ("14", "14.006", 0.0),
        ("1,000", "The result is 1000", 1.0),
        ("x", "x", 1.0),
        ("dog", "cat", 0.0),
    ],
)
def test_open_questions_original_vs_lmms_eval_bug(gold, response, original):
    doc = _open_doc(gold)
    assert mmmu.score(doc, response, mode="original")["score"] == original
    # v0.4 keeps str(first candidate) and checks it character by character
    record = mmmu.score(doc, response)
    assert record["score"] == 0.0
    assert record["lmms_eval_parsed"] == str(record["parsed"][0])


def test_aggregate_is_instance_weighted():
    records = [
        {"subject": "Art", "score": 1.0},
        {"subject": "Art", "score": 1.0},
        {"subject": "Art", "score": 0.0},
        {"subject": "Math", "score": 1.0},
    ]
    result = mmmu.aggregate(records)
    assert result["mmmu_acc"] == 0.75  # (2/3 * 3 + 1 * 1) / 4, not (2/3 + 1) / 2
    assert result["subject_scores"] == {"Art": 0.66667, "Math": 1.0}
    assert result["discipline_scores"] == {"Art and Design": 0.66667, "Science": 1.0}


def test_aggregate_rounds_to_five_decimals():
    records = [{"subject": "Math", "score": float(i < 1)} for i in range(7)]
    assert mmmu.aggregate(records)["mmmu_acc"] == 0.14286
