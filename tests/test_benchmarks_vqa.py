"""VQA normalizer, VQA accuracy and the three VQA tasks (OK-VQA, VizWiz, TextVQA)."""

import pytest

from atvprune.benchmarks import ok_vqa_val2014, textvqa_val, vizwiz_vqa_val, vqa
from atvprune.benchmarks.vqa import normalize_answer, vqa_accuracy

VQA_TASKS = [ok_vqa_val2014, vizwiz_vqa_val, textvqa_val]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # punctuation with no space around it becomes a space ...
        ("t-shirt", "t shirt"),
        # ... but a character that has a space next to it anywhere is deleted everywhere
        ("x-ray - maybe", "xray maybe"),
        # periods not followed by a digit go; decimals stay
        ("u.s.", "us"),
        ("3.", "3"),
        ("3.5", "3.5"),
        (".5", ".5"),
        # step 1: lowercase, "," and "?" deleted, "'s" split off
        ("Yes?", "yes"),
        ("1,000", "1000"),
        ("the cat's toy", "cat 's toy"),
        # step 2: newline and tab are spaces
        ("red\nblue\tgreen", "red blue green"),
        # number words up to ten only, "none" -> 0
        ("Two", "2"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("none", "0"),
        # articles dropped
        ("A dog", "dog"),
        ("an apple and the pear", "apple and pear"),
        # contractions: apostrophe-less -> apostrophe form
        ("dont", "don't"),
        ("oclock", "o'clock"),
        # table quirks: capitalised keys never match, "somebody'd" loses its apostrophe
        ("Im", "im"),
        ("Ive", "ive"),
        ("somebody'd", "somebodyd"),
        # kept characters
        ("$5 #1 50%", "$5 #1 50%"),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_normalize_answer_examples(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_test_looks_at_the_text_before_the_step():
    # ";" has no space next to it -> space, giving "x -y-z". "-" is then judged on the
    # original "x;-y-z" (no space next to "-") -> every "-" becomes a space.
    assert normalize_answer("x;-y-z") == "x y z"


def test_at_most_32_periods_are_removed():
    # MMF passes re.UNICODE (32) as the count argument of re.sub.
    assert normalize_answer("x" + "." * 40) == "x" + "." * 8


def test_normalize_answer_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        normalize_answer(None)


@pytest.mark.parametrize(
    ("matches", "expected"),
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)],
)
def test_vqa_accuracy_partial_credit(matches, expected):
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected, abs=1e-12)


def test_vqa_accuracy_normalizes_both_sides():
    answers = ["2", "two", "Two.", "2 "] + ["3"] * 6
    assert vqa_accuracy("Two", answers) == pytest.approx(1.0)


def test_vqa_accuracy_is_exact_match_not_substring():
    assert vqa_accuracy("black cat", ["cat"] * 10) == 0.0


def test_vqa_accuracy_degenerate_answer_lists():
    assert vqa_accuracy("cat", ["cat"]) == 0.0  # N=1: no other answer to match
    assert vqa_accuracy("cat", []) == 0.0


def _vqa_doc(answers, question="what is this?"):
    return {"question_id": "q7", "question": question, "answers": answers}


@pytest.mark.parametrize("task", VQA_TASKS, ids=lambda m: m.TASK.name)
def test_vqa_score_record(task):
    doc = _vqa_doc(["T-Shirt"] * 2 + ["shirt"] * 8)
    record = task.score(doc, "  t shirt\n")
    assert record["score"] == pytest.approx(0.6)
    assert record["prediction"] == "t shirt"
    assert record["prediction_normalized"] == "t shirt"
    assert record["question_id"] == "q7"
    assert record["answers_normalized"][0] == "t shirt"
    # the doc is not modified in place (lmms-eval would overwrite doc["answers"])
    assert doc["answers"][0] == "T-Shirt"
    assert task.score(doc, "t shirt", mode="original")["score"] == record["score"]


def test_unanswerable_is_an_ordinary_answer():
    doc = _vqa_doc(["unanswerable"] * 4 + ["blue"] * 6)
    assert vizwiz_vqa_val.score(doc, "Unanswerable")["score"] == 1.0
    doc = _vqa_doc(["unanswerable"] * 2 + ["blue"] * 8)
    assert vizwiz_vqa_val.score(doc, "Unanswerable.")["score"] == pytest.approx(0.6)
    # OK-VQA has no unanswerable gold, so following its post-prompt always scores 0
    assert ok_vqa_val2014.score(_vqa_doc(["blue"] * 10), "Unanswerable")["score"] == 0


@pytest.mark.parametrize("task", VQA_TASKS, ids=lambda m: m.TASK.name)
def test_vqa_score_errors(task):
    with pytest.raises(ValueError, match="unknown scoring mode"):
        task.score(_vqa_doc(["a"] * 10), "a", mode="strict")
    with pytest.raises(ValueError, match=r"q7.*'answers'"):
        task.score({"question_id": "q7", "question": "x"}, "a")
    with pytest.raises(ValueError, match="non-string answer"):
        task.score(_vqa_doc(["a", None]), "a")
    with pytest.raises(ValueError, match="prediction"):
        task.score(_vqa_doc(["a"] * 10), None)


def test_vqa_aggregate_is_the_mean_score():
    records = [{"score": 1.0}, {"score": 0.3}, {"score": 0.0}, {"score": 0.6}]
    assert vqa.aggregate(records) == {"exact_match": pytest.approx(0.475)}
    assert textvqa_val.aggregate(records)["exact_match"] == pytest.approx(0.475)
    with pytest.raises(ValueError, match="no records"):
        vqa.aggregate([])


UNANSWERABLE_POST_PROMPT = (
    "\nWhen the provided information is insufficient, respond with 'Unanswerable'."
    "\nAnswer the question using a single word or phrase."
)


def test_ok_vqa_prompt_uses_the_question_verbatim():
    doc = _vqa_doc([], question="what sport can you use this for on an iPhone?")
    assert ok_vqa_val2014.prompt(doc) == (
        "what sport can you use this for on an iPhone?" + UNANSWERABLE_POST_PROMPT
    )


def test_vizwiz_prompt_capitalize_quirk():
    doc = _vqa_doc([], question="what brand is this iPhone?")
    assert vizwiz_vqa_val.prompt(doc) == (
        "What brand is this iphone?" + UNANSWERABLE_POST_PROMPT
    )


def test_textvqa_prompt_has_no_ocr_tokens():
    doc = _vqa_doc([], question="what is the brand of this CAMERA?")
    doc["ocr_tokens"] = ["nikon", "d3"]
    assert textvqa_val.prompt(doc) == (
        "What is the brand of this camera?"
        "\nAnswer the question using a single word or phrase."
    )


@pytest.mark.parametrize("task", VQA_TASKS, ids=lambda m: m.TASK.name)
def test_vqa_prompt_missing_question(task):
    with pytest.raises(ValueError, match=rf"{task.TASK.name}.*q7.*'question'"):
        task.prompt({"question_id": "q7", "answers": []})


def test_vqa_task_specs():
    names = [(t.TASK.name, t.TASK.dataset_path, t.TASK.split) for t in VQA_TASKS]
    assert names == [
        ("ok_vqa_val2014", "lmms-lab/OK-VQA", "val2014"),
        ("vizwiz_vqa_val", "lmms-lab/VizWiz-VQA", "val"),
        ("textvqa_val", "lmms-lab/textvqa", "validation"),
    ]
    for task in VQA_TASKS:
        assert task.TASK.until == ("ASSISTANT:",)
        assert task.TASK.max_new_tokens == 128
        assert task.TASK.headline_metric == "exact_match"
        assert task.TASK.headline_scale == 100.0
