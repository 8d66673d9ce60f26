"""Registry, shared helpers, and the gqa / pope / scienceqa_img / mme tasks; plus a
contract test run on one sample doc of each of the nine tasks."""

import dataclasses
import io

import pytest
from PIL import Image

from atvprune.benchmarks import (
    BENCHMARKS,
    get_benchmark,
    gqa,
    mme,
    pope,
    scienceqa_img,
)
from atvprune.benchmarks.base import check_fields, is_missing, load_rgb


def _image(color=(255, 0, 0), mode="RGB"):
    return Image.new(mode, (4, 3), color)


# One valid doc per task (the fields the real datasets have and the scorers use).
SAMPLE_DOCS = {
    "ok_vqa_val2014": {
        "question_id": "1",
        "image": _image(),
        "question": "What is this?",
        "answers": ["cat"] * 10,
    },
    "vizwiz_vqa_val": {
        "question_id": "v1",
        "image": _image(),
        "question": "what is this?",
        "answers": ["cat"] * 10,
    },
    "textvqa_val": {
        "question_id": 3,
        "image": _image(),
        "question": "what is written?",
        "answers": ["stop"] * 10,
    },
    "gqa": {"id": "g1", "image": _image(), "question": "Is it red?", "answer": "yes"},
    "pope": {
        "question_id": "p1",
        "image": _image(),
        "question": "Is there a cat in the image?",
        "answer": "yes",
        "category": "random",
    },
    "scienceqa_img": {
        "image": _image(),
        "question": "Which is a mammal?",
        "choices": ["frog", "cat"],
        "answer": 1,
        "hint": "",
    },
    "mmbench_en_dev": {
        "index": 7,
        "image": _image(),
        "question": "What animal is shown?",
        "hint": None,
        "A": "cat",
        "B": "dog",
        "C": None,
        "D": None,
        "answer": "A",
        "category": "object_localization",
        "L2-category": "FP-S",
    },
    "mme": {
        "question_id": "count/0001.png",
        "image": _image(),
        "question": "Are there two cats? Please answer yes or no.",
        "answer": "Yes",
        "category": "count",
    },
    "mmmu_val": {
        "id": "validation_Art_1",
        "question": "Who painted <image 1>?",
        "options": "['Monet', 'Manet']",
        "question_type": "multiple-choice",
        "answer": "A",
        "image_1": _image(),
        "image_2": None,
    },
}
# A right answer per sample doc.
GOOD_ANSWERS = {
    "ok_vqa_val2014": "Cat",
    "vizwiz_vqa_val": "cat",
    "textvqa_val": "STOP",
    "gqa": "Yes",
    "pope": "yes",
    "scienceqa_img": "B",
    "mmbench_en_dev": "A",
    "mme": "Yes",
    "mmmu_val": "(A)",
}
PAPER_ORDER = [
    "ok_vqa_val2014",
    "vizwiz_vqa_val",
    "textvqa_val",
    "gqa",
    "pope",
    "scienceqa_img",
    "mmbench_en_dev",
    "mme",
    "mmmu_val",
]


# -------------------------------------------------------------------- registry
def test_registry_order_and_names():
    assert list(BENCHMARKS) == PAPER_ORDER
    for name, module in BENCHMARKS.items():
        assert module.TASK.name == name
        assert module.__name__ == f"atvprune.benchmarks.{name}"
        assert get_benchmark(name) is module


def test_get_benchmark_unknown_name():
    with pytest.raises(KeyError, match="'vqav2'.*ok_vqa_val2014.*mmmu_val"):
        get_benchmark("vqav2")


def test_specs_are_frozen_and_consistent():
    spec = BENCHMARKS["gqa"].TASK
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.split = "train"
    for module in BENCHMARKS.values():
        assert module.TASK.headline_metric in module.TASK.metrics
        assert module.TASK.headline_scale in (1.0, 100.0)
        assert isinstance(module.TASK.until, tuple)
    with pytest.raises(ValueError, match="headline metric"):
        dataclasses.replace(spec, headline_metric="accuracy")


def test_generation_settings_follow_the_task_yamls():
    settings = {
        name: (m.TASK.max_new_tokens, m.TASK.until) for name, m in BENCHMARKS.items()
    }
    assert settings["gqa"] == (16, ("\n\n",))
    assert settings["pope"] == (128, ("\n\n",))
    assert settings["scienceqa_img"] == (16, ("\n\n",))
    assert settings["mmbench_en_dev"] == (1024, ("ASSISTANT:",))
    assert settings["mme"] == (16, ("\n\n",))
    assert settings["mmmu_val"] == (16, ("\n\n",))
    headline = {name: m.TASK.headline_metric for name, m in BENCHMARKS.items()}
    assert headline["pope"] == "pope_accuracy"
    assert headline["mme"] == "mme_perception_score"
    assert BENCHMARKS["mme"].TASK.headline_scale == 1.0
    assert BENCHMARKS["mmbench_en_dev"].TASK.headline_scale == 1.0


# ---------------------------------------------------------- contract, all tasks
@pytest.mark.parametrize("name", PAPER_ORDER)
def test_task_contract_on_a_sample_doc(name):
    module, doc = BENCHMARKS[name], SAMPLE_DOCS[name]
    assert isinstance(module.prompt(doc), str)
    images = module.visuals(doc)
    assert len(images) == 1 and images[0].mode == "RGB"
    record = module.score(doc, "  " + GOOD_ANSWERS[name] + "\n")
    assert record["score"] == 1.0
    assert record["prediction"] == GOOD_ANSWERS[name]  # framework strip applied
    bad = module.score(doc, "zebra")
    assert bad["score"] == 0.0
    records = [record, module.score(doc, GOOD_ANSWERS[name], mode="original")]
    if name == "mmbench_en_dev":  # one row per index: make the second a copy
        records[1] = {**records[1], "index": 1_000_007}
    result = module.aggregate(records)
    assert set(module.TASK.metrics) <= set(result)
    headline = result[module.TASK.headline_metric] * module.TASK.headline_scale
    assert headline == {"mme": 200.0}.get(name, 100.0)


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_task_contract_errors(name):
    module, doc = BENCHMARKS[name], SAMPLE_DOCS[name]
    with pytest.raises(ValueError, match="unknown scoring mode"):
        module.score(doc, "x", mode="lmms-eval-0.3")
    with pytest.raises(ValueError, match=rf"{name}.*missing field 'question'"):
        module.prompt({k: v for k, v in doc.items() if k != "question"})
    field = module.TASK.answer_field
    with pytest.raises(ValueError, match=rf"{name}.*missing field '{field}'"):
        module.score({k: v for k, v in doc.items() if k != field}, "x")
    image_field = "image_1" if name == "mmmu_val" else "image"
    with pytest.raises(ValueError, match=rf"{name}.*'{image_field}'.*missing"):
        module.visuals({**doc, image_field: None})
    with pytest.raises(ValueError, match="no records"):
        module.aggregate([])


# --------------------------------------------------------------------- helpers
def test_check_fields_names_task_doc_and_field():
    with pytest.raises(ValueError, match=r"pope: doc question_id='p9'.*'answer'"):
        check_fields({"question_id": "p9"}, ["answer"], "pope")
    check_fields({"answer": 1}, ["answer"], "pope")  # no error
    with pytest.raises(ValueError, match="mapping"):
        check_fields(["answer"], ["answer"], "pope")


def test_load_rgb_accepts_images_and_undecoded_cells():
    doc = {"id": "d1"}
    assert load_rgb(_image(128, mode="L"), doc, "image", "t").getpixel((0, 0)) == (
        128,
        128,
        128,
    )
    buffer = io.BytesIO()
    _image((1, 2, 3)).save(buffer, format="PNG")
    cell = {"bytes": buffer.getvalue(), "path": None}
    assert load_rgb(cell, doc, "image", "t").getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ValueError, match=r"id='d1'.*'image'.*cannot be read"):
        load_rgb({"bytes": b"not a png", "path": None}, doc, "image", "t")
    with pytest.raises(ValueError, match=r"id='d1'.*'image'.*missing"):
        load_rgb(None, doc, "image", "t")
    with pytest.raises(ValueError, match="not an image"):
        load_rgb("photo.jpg", doc, "image", "t")


# ------------------------------------------------------------------------- gqa
def test_gqa_prompt():
    assert gqa.prompt({"question": "Is the sky blue?"}) == (
        "Is the sky blue?\nAnswer the question using a single word or phrase."
    )


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("Yes", "yes", 1.0),
        ("yes.", "yes", 1.0),  # ASCII punctuation removed from both
        (" yes \n", "yes", 1.0),  # prediction stripped
        ("yes", " yes", 0.0),  # gold not stripped
        ("T-shirt", "tshirt", 1.0),
        ("t shirt", "t-shirt", 0.0),
        ("the dog", "dog", 0.0),  # no article removal
        ("2", "two", 0.0),  # no number words
        ("don\u2019t", "dont", 0.0),  # curly apostrophe is not ASCII punctuation
    ],
)
def test_gqa_exact_match(prediction, gold, expected):
    doc = {"id": "g", "question": "q", "answer": gold}
    assert gqa.score(doc, prediction)["score"] == expected


def test_gqa_attach_images_joins_on_image_id():
    import datasets

    images = datasets.Dataset.from_dict(
        {"id": ["n1", "n2"], "image": [_image((1, 1, 1)), _image((2, 2, 2))]},
        features=datasets.Features(
            {"id": datasets.Value("string"), "image": datasets.Image()}
        ),
    )
    questions = datasets.Dataset.from_dict(
        {
            "id": ["q1", "q2", "q3"],
            "imageId": ["n2", "n1", "n2"],
            "question": list("abc"),
        }
    )
    joined = gqa.attach_images(questions, images)
    assert joined.column_names == ["id", "imageId", "question", "image"]
    colors = [gqa.visuals(doc)[0].getpixel((0, 0)) for doc in joined]
    assert colors == [(2, 2, 2), (1, 1, 1), (2, 2, 2)]
    # an existing image column is replaced
    again = gqa.attach_images(joined, images)
    assert again.column_names == ["id", "imageId", "question", "image"]
    missing = datasets.Dataset.from_dict({"imageId": ["n1", "n404"]})
    with pytest.raises(KeyError, match="n404"):
        gqa.attach_images(missing, images)


# ------------------------------------------------------------------------ pope
def test_pope_prompt_strips_the_question():
    assert pope.prompt({"question": " Is there a dog in the image? "}) == (
        "Is there a dog in the image?"
        "\nAnswer the question using a single word or phrase."
    )


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("yes", 1.0),
        ("Yes", 1.0),
        (" YES\n", 1.0),
        ("Yes.", 0.0),
        ("Yes, there is", 0.0),
    ],
)
def test_pope_exact_yes_no(prediction, expected):
    doc = {"question_id": "p", "question": "q", "answer": "yes"}
    assert pope.score(doc, prediction)["score"] == expected


def _pope_records(pairs, category=None):
    return [
        pope.score({"question_id": str(i), "answer": gold, "category": category}, pred)
        for i, (gold, pred) in enumerate(pairs)
    ]


def test_pope_aggregate_hand_case():
    pairs = [
        ("yes", "yes"),  # TP
        ("yes", "Yes."),  # neither yes nor no: wrong, invisible to P and R
        ("yes", "no"),  # FN
        ("no", "yes"),  # FP
        ("no", "no"),
        ("no", "No"),
        ("no", "no"),
        ("yes", "yes"),  # TP
        ("no", "yes"),  # FP
    ]
    result = pope.aggregate(_pope_records(pairs))
    assert result["pope_accuracy"] == pytest.approx(5 / 9)
    assert result["pope_precision"] == pytest.approx(2 / 4)
    assert result["pope_recall"] == pytest.approx(2 / 3)
    assert result["pope_f1_score"] == pytest.approx(4 / 7)
    assert result["pope_yes_ratio"] == pytest.approx(4 / 9)
    # the bug: yes_ratio is the share of *gold* yes, not of predicted yes
    skewed = pope.aggregate(_pope_records([("yes", "no"), ("no", "no"), ("no", "no")]))
    assert skewed["pope_yes_ratio"] == pytest.approx(1 / 3)  # nothing predicted yes


def test_pope_zero_denominators_and_categories():
    records = _pope_records([("yes", "Yes."), ("no", "No.")], category="adversarial")
    records += _pope_records([("yes", "yes")], category="random")
    result = pope.aggregate(records[:2])
    assert result["pope_precision"] == result["pope_recall"] == 0.0
    assert result["pope_f1_score"] == 0.0
    per_setting = pope.aggregate(records)["category_scores"]
    assert per_setting["random"]["pope_f1_score"] == 1.0
    assert per_setting["adversarial"]["pope_accuracy"] == 0.0


def test_pope_rejects_non_yes_no_gold():
    with pytest.raises(ValueError, match="maybe"):
        pope.score({"question_id": "p", "answer": "maybe"}, "yes")


# ----------------------------------------------------------------- scienceqa_img
SQA_DOC = {
    "image": _image(),
    "question": "Which animal is a mammal?",
    "choices": ["frog", "cat", "snail"],
    "answer": 1,
    "hint": "",
}


def test_scienceqa_prompt_without_and_with_context():
    assert scienceqa_img.prompt(SQA_DOC) == (
        "Which animal is a mammal?\nA. frog\nB. cat\nC. snail"
        "\nAnswer with the option's letter from the given choices directly."
    )
    assert scienceqa_img.prompt({**SQA_DOC, "hint": "Cats purr."}) == (
        "Context: Cats purr.\nWhich animal is a mammal?\nA. frog\nB. cat\nC. snail"
        "\nAnswer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize(
    ("prediction", "lmms_eval", "original"),
    [
        ("B", 1.0, 1.0),
        ("b", 1.0, 1.0),
        ("B.", 1.0, 0.0),
        ("B. cat", 1.0, 0.0),
        ("B.C", 1.0, 0.0),
        ("(B)", 0.0, 0.0),
        ("B)", 0.0, 0.0),
        ("b. cat", 0.0, 0.0),
        ("The answer is B", 0.0, 0.0),
        ("B\nbecause cats purr", 0.0, 0.0),
        ("A.", 0.0, 0.0),
        ("A. frog", 0.0, 0.0),
    ],
)
def test_scienceqa_letter_rules(prediction, lmms_eval, original):
    assert scienceqa_img.score(SQA_DOC, prediction)["score"] == lmms_eval
    assert (
        scienceqa_img.score(SQA_DOC, prediction, mode="original")["score"] == original
    )
    assert scienceqa_img.score(SQA_DOC, prediction)["answer"] == "B"


def test_scienceqa_bad_docs():
    with pytest.raises(ValueError, match="outside"):
        scienceqa_img.score({**SQA_DOC, "answer": 3}, "B")
    with pytest.raises(ValueError, match="'hint' must be a string"):
        scienceqa_img.prompt({**SQA_DOC, "hint": None})


def test_scienceqa_aggregate():
    records = [scienceqa_img.score(SQA_DOC, p) for p in ["B", "A", "B.", "(B)"]]
    assert scienceqa_img.aggregate(records) == {"exact_match": 0.5}


# ------------------------------------------------------------------------- mme
def test_mme_prompt_replaces_the_yes_no_sentence():
    doc = {"question": " Is there a dog in this image? Please answer yes or no. "}
    assert mme.prompt(doc) == (
        "Is there a dog in this image?"
        "\nAnswer the question using a single word or phrase."
    )


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("Y", "yes"),
        ("n", "no"),
        ("x", "other"),
        ("Yes, there is a dog.", "yes"),
        ("Not sure", "no"),
        ("None", "no"),
        ("Nope", "no"),
        ("know", "no"),
        ("The answer is yes", "other"),
        ("Absolutely yes", "other"),
        ("", "other"),
        ("...", "other"),
    ],
)
def test_mme_parse_yes_no(prediction, label):
    assert mme.parse_yes_no(prediction) == label


def _mme_record(question_id, category, gold, prediction):
    doc = {"question_id": question_id, "category": category, "answer": gold}
    return mme.score(doc, prediction)


def test_mme_score_gold_is_lowercased():
    assert _mme_record("a.png", "count", "Yes", "yes")["score"] == 1.0
    assert _mme_record("a.png", "count", "No", "Not sure")["score"] == 1.0
    assert _mme_record("a.png", "count", "Yes", "The answer is yes")["score"] == 0.0


def test_mme_aggregate_acc_plus():
    records = [
        _mme_record("e/1.png", "existence", "Yes", "yes"),  # image 1: 2/2 -> 100+100
        _mme_record("e/1.png", "existence", "No", "no"),
        _mme_record("e/2.png", "existence", "Yes", "yes"),  # image 2: 1/2 -> 50+0
        _mme_record("e/2.png", "existence", "No", "yes"),
        _mme_record("c/1.png", "count", "Yes", "no"),  # 0/2 -> 0
        _mme_record("c/1.png", "count", "No", "yes"),
        _mme_record("k/1.png", "code_reasoning", "Yes", "yes"),  # 1/2 -> 50
        _mme_record("k/1.png", "code_reasoning", "No", "Yes"),
    ]
    result = mme.aggregate(records)
    assert result["category_scores"] == {
        "existence": 125.0,
        "count": 0.0,
        "code_reasoning": 50.0,
    }
    assert result["mme_perception_score"] == 125.0
    assert result["mme_cognition_score"] == 50.0
    perception_only = mme.aggregate(records[:6])
    assert perception_only["mme_cognition_score"] == 0.0


def test_mme_aggregate_needs_two_questions_per_image():
    records = [
        _mme_record("e/1.png", "existence", "Yes", "yes"),
        _mme_record("e/1.png", "existence", "No", "no"),
        _mme_record("e/1.png", "existence", "No", "no"),
    ]
    with pytest.raises(ValueError, match=r"'e/1.png'.*'existence'.*3 questions"):
        mme.aggregate(records)
    with pytest.raises(ValueError, match="'e/1.png'.*1 questions"):
        mme.aggregate(records[:1])


def test_mme_rejects_unknown_categories_and_golds():
    with pytest.raises(ValueError, match="unknown MME category 'Count'"):
        _mme_record("a.png", "Count", "Yes", "yes")
    with pytest.raises(ValueError, match="expected yes/no"):
        _mme_record("a.png", "count", "Maybe", "yes")


def test_nan_is_missing():
    assert is_missing(None) and is_missing(float("nan"))
    assert not is_missing("") and not is_missing("nan") and not is_missing(0)
