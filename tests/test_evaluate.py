"""Evaluation: batched generation equals batch-1 generation; records and metrics."""

from __future__ import annotations

import pytest

from atvprune.benchmarks import BENCHMARKS
from atvprune.evaluate import evaluate, load_docs, truncate_until
from atvprune.world.build import build_world

SIZES = {
    "eval_items": 12,
    "train_items": 10,
    "train_conversations": 4,
    "calib_conversations": 4,
}


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    build_world(root / "world", seed=3, sizes=SIZES)
    return root / "world"


@pytest.mark.parametrize("task", ["pope", "mmbench_en_dev", "gqa"])
def test_batched_predictions_equal_unbatched(tiny_llava, small_world, task):
    model, processor, adapter = tiny_llava
    bench = BENCHMARKS[task]
    docs = load_docs(bench, {"local_path": str(small_world / task), "n_samples": 6})
    one, _ = evaluate(
        model,
        processor,
        adapter,
        bench,
        docs,
        1,
        "lmms-eval-0.4",
        progress=False,
        max_new_tokens=6,
    )
    many, metrics = evaluate(
        model,
        processor,
        adapter,
        bench,
        docs,
        4,
        "lmms-eval-0.4",
        progress=False,
        max_new_tokens=6,
    )
    assert [r["raw_prediction"] for r in one] == [r["raw_prediction"] for r in many]
    assert bench.TASK.headline_metric in metrics


def test_local_split_errors_name_the_problem(small_world):
    bench = BENCHMARKS["pope"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_docs(bench, {"local_path": str(small_world / "nowhere")})
    with pytest.raises(ValueError, match="asked for 10000"):
        load_docs(bench, {"local_path": str(small_world / "pope"), "n_samples": 10000})


def test_truncate_until_cuts_at_first_stop():
    assert truncate_until("yes\n\nmore", ("\n\n",)) == "yes"
    assert truncate_until("A ASSISTANT: B", ("ASSISTANT:",)) == "A "
    assert truncate_until("plain", ("\n\n",)) == "plain"
