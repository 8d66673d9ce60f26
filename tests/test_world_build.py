"""The mini world's benchmark records, conversations and on-disk build."""

from __future__ import annotations

import ast
import itertools
import shutil
from collections import Counter, defaultdict

import datasets
import numpy as np
import pytest

from atvprune.world.benchmarks import (
    CIRCULAR_OFFSET,
    EVAL_SPLITS,
    FEATURES,
    GQA_IMAGES,
    GQA_INSTRUCTIONS,
    POPE_SETTINGS,
    TASK_DATASETS,
    TASKS,
    ask_colour_of_shape,
    ask_count_all,
    ask_position_of_shape,
    ask_relation,
    ask_shape_at_cell,
    build_task,
    circular_copies,
    noisy_answers,
    pope_negatives,
    pope_rows,
    pope_statistics,
    questions_per_scene,
    relation_triples,
    with_absent_distractors,
)
from atvprune.world.build import (
    build_world,
    check_disjoint,
    check_sizes,
    dataset_dirs,
    dataset_fingerprint,
)
from atvprune.world.conversations import conversation_records
from atvprune.world.scenes import (
    CELLS,
    COLOURS,
    SHAPES,
    Scene,
    caption,
    sample_scene,
)

SMALL = {
    "eval_items": 30,
    "train_items": 40,
    "train_conversations": 20,
    "calib_conversations": 10,
}

# The field names of the real HF datasets (dataset cards), independent of FEATURES.
REAL_FIELDS = {
    "ok_vqa_val2014": {
        "question_id", "image", "question", "answers", "question_type",
        "answer_type",
    },
    "vizwiz_vqa_val": {"question_id", "image", "question", "answers", "category"},
    "textvqa_val": {
        "image_id", "question_id", "question", "question_tokens", "image",
        "image_width", "image_height", "flickr_original_url", "flickr_300k_url",
        "answers", "image_classes", "set_name", "ocr_tokens",
    },
    GQA_INSTRUCTIONS: {
        "id", "imageId", "question", "answer", "fullAnswer", "isBalanced", "groups",
        "entailed", "equivalent", "types", "annotations", "semantic", "semanticStr",
    },
    GQA_IMAGES: {"id", "image"},
    "pope": {
        "id", "question_id", "question", "answer", "image_source", "image",
        "category",
    },
    "scienceqa_img": {
        "image", "question", "choices", "answer", "hint", "task", "grade", "subject",
        "topic", "category", "skill", "lecture", "solution",
    },
    "mmbench_en_dev": {
        "index", "question", "hint", "answer", "A", "B", "C", "D", "category",
        "image", "source", "L2-category", "comment", "split",
    },
    "mme": {"question_id", "image", "question", "answer", "category"},
    "mmmu_val": {
        "id", "question", "options", "explanation",
        *(f"image_{k}" for k in range(1, 8)),
        "img_type", "answer", "topic_difficulty", "question_type", "subfield",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    manifest = build_world(out, seed=3, sizes=SMALL)
    return out, manifest


def load(world_dir, name, split):
    return datasets.load_from_disk(str(world_dir / name))[split]


# --- question families ----------------------------------------------------------


def test_questions_are_asked_only_when_unambiguous():
    rng = np.random.default_rng(0)
    two_circles = Scene(
        objects=[("circle", "red", "top left"), ("circle", "blue", "bottom right")]
    )
    assert ask_colour_of_shape(two_circles, rng) is None
    assert ask_position_of_shape(two_circles, rng) is None
    one_each = Scene(objects=[("circle", "red", "top"), ("ring", "blue", "left")])
    qa = ask_colour_of_shape(one_each, np.random.default_rng(1))
    assert (qa.question, qa.answer) in {
        ("what color is the circle?", "red"),
        ("what color is the ring?", "blue"),
    }


def test_relations_use_half_planes_and_need_a_single_target():
    scene = Scene(
        objects=[
            ("square", "green", "top left"),
            ("circle", "red", "center"),
            ("cross", "blue", "bottom left"),
        ]
    )
    triples = {(ref[0], rel, tgt[0]) for ref, rel, tgt in relation_triples(scene)}
    # Two shapes lie left of the circle: no "to the left of the red circle" question.
    assert not any(
        ref == "circle" and rel == "to the left of" for ref, rel, _ in triples
    )
    assert ("circle", "above", "square") in triples
    assert ("circle", "below", "cross") in triples
    assert ("square", "to the right of", "circle") in triples
    for seed in range(20):
        qa = ask_relation(scene, np.random.default_rng(seed))
        if qa.question == "what shape is above the red circle?":
            assert qa.answer == "square"


def test_multiple_choice_distractors_are_absent_from_the_scene():
    scene = Scene(
        objects=[
            ("circle", "red", "top left"),
            ("ring", "blue", "center"),
            ("square", "red", "bottom"),
        ]
    )
    colour = with_absent_distractors(
        scene, ask_colour_of_shape(scene, np.random.default_rng(0))
    )
    assert set(colour.wrong) == {"green", "yellow", "purple"}  # red, blue are worn
    shape = with_absent_distractors(
        scene, ask_shape_at_cell(scene, np.random.default_rng(0))
    )
    assert set(shape.wrong) == {"triangle", "cross", "diamond"}
    position = with_absent_distractors(
        scene, ask_position_of_shape(scene, np.random.default_rng(0))
    )
    assert set(position.wrong) == set(CELLS) - {"top left", "center", "bottom"}
    assert position.answer not in position.wrong
    count = ask_count_all(scene, np.random.default_rng(0))
    assert with_absent_distractors(scene, count) == count  # a count has no absent value
    assert len(COLOURS) == 5


def test_train_split_asks_several_distinct_questions_per_scene():
    def ask(scene):
        return ask_shape_at_cell(scene, rng)

    rng = np.random.default_rng(3)
    pairs = list(
        itertools.islice(
            questions_per_scene(rng, "train", "train", ask, lambda q: q.question), 30
        )
    )
    by_scene = defaultdict(list)
    for scene, qa in pairs:
        by_scene[caption(scene)].append(qa.question)
    assert max(len(q) for q in by_scene.values()) == 3
    assert all(len(set(q)) == len(q) for q in by_scene.values())
    rng = np.random.default_rng(3)
    held_out = list(
        itertools.islice(
            questions_per_scene(rng, "eval", "test", ask, lambda q: q.question), 10
        )
    )
    assert len({caption(scene) for scene, _ in held_out}) == 10


def test_noisy_answers_keep_a_clear_majority():
    rng = np.random.default_rng(4)
    for _ in range(100):
        answers = noisy_answers(rng, "red", ["blue", "green"])
        assert len(answers) == 10 and answers.count("red") >= 7
    assert any(
        answers.count("red") < 10
        for answers in (noisy_answers(rng, "red", ["blue"]) for _ in range(50))
    )


# --- POPE -----------------------------------------------------------------------


def test_pope_negatives_are_absent_and_balanced():
    rng = np.random.default_rng(7)
    scenes = [sample_scene(rng) for _ in range(60)]
    rows = pope_rows(scenes, rng, "test")
    by_image = defaultdict(list)
    for row in rows:
        by_image[int(row["image_source"].rsplit("_", 1)[1])].append(row)
    assert len(by_image) == len(scenes)
    for index, image_rows in by_image.items():
        present = scenes[index].shapes_present()
        for row in image_rows:
            shape = row["question"].removeprefix("Is there a ").split()[0]
            assert (shape in present) == (row["answer"] == "yes"), row["question"]
        for setting in POPE_SETTINGS:
            answers = Counter(
                r["answer"] for r in image_rows if r["category"] == setting
            )
            assert answers["yes"] == answers["no"] >= 1
    assert [r["id"] for r in rows] == [str(i) for i in range(len(rows))]


def test_pope_strategies_differ():
    rng = np.random.default_rng(8)
    scenes = [sample_scene(rng) for _ in range(2000)]
    frequency, together = pope_statistics(scenes)

    def negatives(setting, present, k=1):
        return pope_negatives(setting, present, k, rng, frequency, together)

    # square is the most frequent shape after circle; ring is circle's partner and
    # cross is triangle's.
    assert negatives("popular", {"circle"}) == ["square"]
    assert negatives("adversarial", {"circle"}) == ["ring"]
    assert negatives("popular", {"triangle"}) == ["circle"]
    assert negatives("adversarial", {"triangle"}) == ["cross"]
    randoms = Counter(s for _ in range(300) for s in negatives("random", {"circle"}, 2))
    assert set(randoms) == {"square", "triangle", "cross", "diamond", "ring"}
    with pytest.raises(ValueError, match="sneaky"):
        negatives("sneaky", {"circle"})


# --- MMBench and MME -------------------------------------------------------------


def test_circular_copies_rotate_options_and_remap_the_answer():
    row = {"index": 5, "A": "w", "B": "x", "C": "y", "D": "z", "answer": "C"}
    copies = circular_copies(row, 4)
    assert [c["index"] for c in copies] == [1_000_005, 2_000_005, 3_000_005]
    assert [copies[0][k] for k in "ABCD"] == ["x", "y", "z", "w"]
    assert [c["answer"] for c in copies] == ["B", "A", "D"]
    for copy in copies:  # the gold text never changes
        assert copy[copy["answer"]] == "y"
    three = circular_copies({"index": 1, "A": "p", "B": "q", "C": "r", "D": None,
                             "answer": "A"}, 3)  # fmt: skip
    assert [(c["A"], c["B"], c["C"], c["D"]) for c in three] == [
        ("q", "r", "p", None),
        ("r", "p", "q", None),
    ]


def test_mmbench_groups_in_built_data(world):
    world_dir, _ = world
    rows = load(world_dir, "mmbench_en_dev", "dev")
    groups = defaultdict(list)
    for row in rows:
        groups[row["index"] % CIRCULAR_OFFSET].append(row)
    for rows_of_group in groups.values():
        original = min(rows_of_group, key=lambda r: r["index"])
        n_options = sum(original[k] is not None for k in "ABCD")
        assert 2 <= n_options <= 4 and len(rows_of_group) == n_options
        gold = original[original["answer"]]
        assert all(r[r["answer"]] == gold for r in rows_of_group)


def test_mme_has_one_yes_and_one_no_per_image(world):
    world_dir, _ = world
    for split in ("test", "train"):
        pairs = defaultdict(list)
        for row in load(world_dir, "mme", split):
            assert row["question"].endswith("? Please answer yes or no.")
            assert row["question_id"].startswith(row["category"] + "/")
            pairs[row["question_id"]].append(row["answer"])
        assert all(sorted(a) == ["No", "Yes"] for a in pairs.values())
        categories = {qid.split("/")[0] for qid in pairs}
        assert categories <= {
            "existence", "count", "position", "color", "OCR", "numerical_calculation"
        }  # fmt: skip


# --- every task -----------------------------------------------------------------


def test_every_dataset_has_the_real_fields_types_and_splits(world):
    world_dir, _ = world
    for task in TASKS:
        for name in TASK_DATASETS[task]:
            dataset_dict = datasets.load_from_disk(str(world_dir / name))
            assert set(dataset_dict) == {EVAL_SPLITS[task], "train"}, name
            for split, dataset in dataset_dict.items():
                assert set(dataset.column_names) == REAL_FIELDS[name], name
                assert dataset.features == FEATURES[name], (name, split)
                assert len(dataset) >= 1


def test_task_records_look_like_the_real_data(world):
    world_dir, _ = world
    okvqa = load(world_dir, "ok_vqa_val2014", "val2014")
    assert all(len(a) == 10 for a in okvqa["answers"])
    vizwiz = load(world_dir, "vizwiz_vqa_val", "val")
    assert all(q == q.lower() for q in vizwiz["question"])
    textvqa = load(world_dir, "textvqa_val", "validation")
    for row in textvqa:
        assert row["ocr_tokens"][0] in "0123456789"
        assert Counter(row["answers"]).most_common(1)[0][0] == row["ocr_tokens"][0]
    gqa_ids = set(load(world_dir, GQA_IMAGES, "testdev")["id"])
    assert set(load(world_dir, GQA_INSTRUCTIONS, "testdev")["imageId"]) <= gqa_ids
    for row in load(world_dir, "scienceqa_img", "test"):
        assert 2 <= len(row["choices"]) <= 5 and 0 <= row["answer"] < len(
            row["choices"]
        )
    for row in load(world_dir, "mmmu_val", "validation"):
        assert row["id"].startswith("validation_") and "<image 1>" in row["question"]
        assert row["image_1"] is not None
        assert all(row[f"image_{k}"] is None for k in range(2, 8))
        options = ast.literal_eval(row["options"])
        if row["question_type"] == "multiple-choice":
            assert row["answer"] in "ABCD"[: len(options)]
        else:
            assert row["question_type"] == "open" and options == []


def test_vizwiz_asks_unanswerable_questions_about_absent_shapes():
    rows = build_task("vizwiz_vqa_val", np.random.default_rng(0), 300, "val", "eval")
    rows = rows["vizwiz_vqa_val"]
    unanswerable = [r for r in rows if r["category"] == "unanswerable"]
    assert 0.1 < len(unanswerable) / len(rows) < 0.3
    assert all(r["answers"].count("unanswerable") >= 7 for r in unanswerable)


def test_build_task_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError, match="vqav2"):
        build_task("vqav2", rng, 5, "val", "eval")
    with pytest.raises(ValueError, match="n=0"):
        build_task("pope", rng, 0, "test", "eval")


# --- conversations --------------------------------------------------------------


def test_conversations_follow_the_llava_next_schema():
    records = conversation_records(np.random.default_rng(0), 30, "train", "train")
    for record in records:
        turns = record["conversations"]
        assert turns[0]["from"] == "human" and turns[0]["value"].startswith("<image>\n")
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert 2 <= len(turns) // 2 <= 4
        assert record["data_source"] == "sharegpt4v_mini"
    # The first answer is the dense caption of the scene in the image.
    assert all(" at the " in r["conversations"][1]["value"] for r in records)


# --- build: splits, disjointness, determinism ----------------------------------


def test_world_layout_and_manifest(world):
    world_dir, manifest = world
    conversations = datasets.load_from_disk(str(world_dir / "sharegpt4v"))
    assert set(conversations) == {"train", "calib"}
    assert len(conversations["calib"]) == SMALL["calib_conversations"]
    assert manifest["seed"] == 3 and manifest["sizes"] == SMALL
    assert set(manifest["datasets"]) == set(dataset_dirs())
    assert (world_dir / "world.json").is_file()


def test_check_disjoint_passes_and_catches_a_leak(world, tmp_path):
    world_dir, _ = world
    counts = check_disjoint(world_dir)
    assert counts["calib"] == SMALL["calib_conversations"] and counts["train"] > 0
    leaky = tmp_path / "leaky"
    shutil.copytree(world_dir, leaky)
    conversations = datasets.load_from_disk(str(world_dir / "sharegpt4v"))
    eval_images = load(world_dir, "pope", "test").select(range(2))
    leaked_calib = conversations["calib"].select(range(2))
    leaked_calib = leaked_calib.cast_column("image", datasets.Image())
    leaked_calib = leaked_calib.map(
        lambda r, i: {"image": eval_images[i]["image"]},
        with_indices=True,
        keep_in_memory=True,  # leave the shared fixture's directory untouched
    )
    shutil.rmtree(leaky / "sharegpt4v")
    datasets.DatasetDict(
        {"train": conversations["train"], "calib": leaked_calib}
    ).save_to_disk(str(leaky / "sharegpt4v"))
    with pytest.raises(ValueError, match="calib and eval"):
        check_disjoint(leaky)


def test_same_seed_same_bytes_other_seed_other_bytes(world, tmp_path):
    world_dir, manifest = world
    again = build_world(tmp_path / "again", seed=3, sizes=SMALL)
    assert again == manifest
    for name in dataset_dirs():
        assert dataset_fingerprint(tmp_path / "again" / name) == dataset_fingerprint(
            world_dir / name
        )
    other = build_world(tmp_path / "other", seed=4, sizes=SMALL)
    for name in dataset_dirs():
        assert other["datasets"][name] != manifest["datasets"][name], name


def test_build_rejects_bad_sizes_and_non_empty_output(world, tmp_path):
    world_dir, _ = world
    with pytest.raises(KeyError, match="eval_imgs"):
        check_sizes({"eval_imgs": 3})
    with pytest.raises(ValueError, match="train_items"):
        check_sizes({"train_items": 0})
    with pytest.raises(FileExistsError):
        build_world(world_dir, seed=3, sizes=SMALL)
    with pytest.raises(ValueError, match="seed"):
        build_world(tmp_path / "x", seed=-1, sizes=SMALL)


def test_captions_describe_the_rendered_scene():
    scene = Scene(objects=[("diamond", "purple", "left")], digit=(0, "top"))
    assert caption(scene) == "the number 0 at the top . a purple diamond at the left"
    assert set(SHAPES) >= {"diamond"}
