"""Instruction-tuning examples for the tiny model, built from the mini world.

Two sources, both rendered through the same chat template as evaluation:
- the ShareGPT4V-like training conversations (dense caption + QA turns), which give the
  model dense supervision about every object;
- each benchmark's *train* split (disjoint scenes from the evaluated split), formatted
  with that benchmark's own `prompt(doc)` and answered with its gold answer, so the
  model learns the nine answer formats (short word, yes/no, option letter).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from atvprune.benchmarks import BENCHMARKS
from atvprune.calibration import conversation_turns
from atvprune.evaluate import load_local_split
from atvprune.world.train import Example

VQA_TASKS = ("ok_vqa_val2014", "vizwiz_vqa_val", "textvqa_val")


def training_target(task: str, doc: dict) -> str:
    """The answer the model is taught to give for one benchmark doc."""
    if task in VQA_TASKS:
        # The majority annotator answer (first seen wins a tie), as VQA training sets
        # use.
        counts = Counter(doc["answers"])
        best = max(counts.values())
        return next(a for a in doc["answers"] if counts[a] == best)
    if task == "scienceqa_img":
        return chr(ord("A") + int(doc["answer"]))
    if task in ("gqa", "pope", "mmbench_en_dev", "mme", "mmmu_val"):
        return str(doc["answer"])
    raise KeyError(f"no training target rule for benchmark {task!r}")


def benchmark_examples(
    world_dir: Path, task: str, max_turns_per_image: int = 1
) -> list[Example]:
    """A benchmark's train split as conversations: consecutive questions about the same
    image (POPE asks up to 18, MME 2, MMBench's circular copies 2-4) share one sequence,
    up to `max_turns_per_image` QA pairs, so the image tokens are paid for once."""
    bench = BENCHMARKS[task]
    docs = load_local_split(bench, Path(world_dir) / task, "train")
    examples: list[Example] = []
    current_key, image, turns = None, None, []
    for doc in docs:
        (doc_image,) = bench.visuals(doc)
        key = doc_image.tobytes()
        if key != current_key or len(turns) >= 2 * max_turns_per_image:
            if turns:
                examples.append(Example(image=image, turns=tuple(turns)))
            current_key, image, turns = key, doc_image, []
        turns += [
            ("user", bench.prompt(doc)),
            ("assistant", training_target(task, doc)),
        ]
    if turns:
        examples.append(Example(image=image, turns=tuple(turns)))
    return examples


def conversation_examples(world_dir: Path, split: str = "train") -> list[Example]:
    records = datasets.load_from_disk(str(Path(world_dir) / "sharegpt4v"))[split]
    return [
        Example(image=r["image"].convert("RGB"), turns=tuple(conversation_turns(r)))
        for r in records
    ]


def training_examples(
    world_dir: Path,
    tasks=tuple(BENCHMARKS),
    max_turns_per_image: int = 1,
    conversations: bool = True,
) -> list[Example]:
    """Every training example, in a fixed order (the trainer shuffles with its seed)."""
    examples = conversation_examples(world_dir) if conversations else []
    for task in tasks:
        examples.extend(benchmark_examples(world_dir, task, max_turns_per_image))
    return examples


def example_texts(examples: list[Example]) -> list[str]:
    """All text the tokenizer must cover."""
    return [text for ex in examples for _, text in ex.turns]
