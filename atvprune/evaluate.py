"""Benchmark evaluation: batched greedy generation -> predictions -> records -> metrics.

Generation follows lmms-eval's wrappers: greedy, one image first, the task's
max_new_tokens, `until` applied only by wrappers that apply it (not llava's). Batching
uses left padding and the KV cache; a test checks that batched predictions equal batch-1
predictions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from PIL import Image
from tqdm import tqdm

from atvprune.models.base import ModelAdapter


def load_docs(bench, source: dict, split: str | None = None) -> datasets.Dataset:
    """A benchmark split (default: the evaluated one) from a local copy or the hub."""
    task = bench.TASK
    split = split or task.split
    if source.get("local_path"):
        docs = load_local_split(bench, Path(source["local_path"]), split)
    else:
        docs = _load_from_hub(bench, source)
    n = source.get("n_samples")
    if n is not None:
        if n > len(docs):
            raise ValueError(
                f"benchmark {task.name}: asked for {n} items, split has {len(docs)}"
            )
        docs = docs.select(range(n))
    return docs


def load_local_split(bench, root: Path, split: str) -> datasets.Dataset:
    """A `save_to_disk` copy in the real schema (GQA: questions joined with images)."""
    task = bench.TASK
    if not root.exists():
        raise FileNotFoundError(
            f"benchmark {task.name}: local dataset {root} does not exist"
        )
    if task.name == "gqa":
        questions = _split(
            datasets.load_from_disk(str(root / task.dataset_name)), split, root
        )
        images = _split(
            datasets.load_from_disk(str(root / bench.IMAGES_DATASET_NAME)), split, root
        )
        return bench.attach_images(questions, images)
    return _split(datasets.load_from_disk(str(root)), split, root)


def _split(dataset_dict, split: str, root: Path) -> datasets.Dataset:
    if split not in dataset_dict:
        raise KeyError(f"{root}: no split {split!r} (has {sorted(dataset_dict)})")
    return dataset_dict[split]


def _load_from_hub(bench, source: dict) -> datasets.Dataset:
    task = bench.TASK
    path = source.get("dataset", task.dataset_path)
    revision = source.get("revision")
    try:
        if task.name == "gqa":
            questions = datasets.load_dataset(
                path, task.dataset_name, split=task.split, revision=revision
            )
            images = datasets.load_dataset(
                path, bench.IMAGES_DATASET_NAME, split=task.split, revision=revision
            )
            return bench.attach_images(questions, images)
        return datasets.load_dataset(
            path, task.dataset_name, split=task.split, revision=revision
        )
    except Exception as error:  # network/hub errors come in many types
        raise RuntimeError(
            f"could not load benchmark {task.name} from the hub ({path}, "
            f"revision {revision}): {error}. Without network access, download it "
            f"elsewhere and point `benchmarks.{task.name}.local_path` at a "
            f"`save_to_disk` copy, or set "
            f"HF_DATASETS_OFFLINE=1 with a populated HF cache."
        ) from error


@torch.no_grad()
def generate(
    model,
    processor,
    adapter: ModelAdapter,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    progress: bool = False,
    desc: str = "generate",
) -> list[str]:
    """Greedy answers for (image, user text) pairs, in input order."""
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    dtype = next(model.parameters()).dtype
    answers: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        texts = [
            adapter.chat_text(processor, [("user", p)], generation=True)
            for p in prompts[start : start + batch_size]
        ]
        batch_images = [
            img.convert("RGB") for img in images[start : start + batch_size]
        ]
        # The adapter applies the lmms-eval wrapper's image settings (Qwen pixels).
        inputs = adapter.encode_for_generation(processor, batch_images, texts)
        inputs = inputs.to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return answers


def truncate_until(text: str, until: Sequence[str]) -> str:
    """Cut at the first stop string (what the Qwen wrappers do)."""
    for stop in until:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text


def evaluate(
    model,
    processor,
    adapter: ModelAdapter,
    bench,
    docs: datasets.Dataset,
    batch_size: int,
    mode: str,
    progress: bool = True,
    max_new_tokens: int | None = None,
) -> tuple[list[dict], dict]:
    """Generate for every doc, score each in dataset order, aggregate.

    `max_new_tokens` overrides the task's budget (tests only; runs use the task's)."""
    task = bench.TASK
    if isinstance(docs, datasets.Dataset):
        # The benchmark's `visuals` decode the images (benchmarks.base.load_rgb), so a
        # corrupt one is reported with its doc named instead of a bare PIL error.
        for name, feature in docs.features.items():
            if isinstance(feature, datasets.Image) and feature.decode:
                docs = docs.cast_column(name, datasets.Image(decode=False))
    # Read once: iterating a Dataset again would re-read every image.
    docs = list(docs)
    prompts, images = [], []
    for doc in docs:
        prompts.append(bench.prompt(doc))
        visuals = bench.visuals(doc)
        if len(visuals) != 1:
            raise ValueError(
                f"{task.name}: doc has {len(visuals)} images; one is supported"
            )
        images.append(visuals[0])
    raw = generate(
        model,
        processor,
        adapter,
        images,
        prompts,
        max_new_tokens or task.max_new_tokens,
        batch_size,
        progress=progress,
        desc=f"eval {task.name}",
    )
    # lmms-eval seeds python's random once per run; MMMU's fallback draws from it in
    # order.
    rng = random.Random(0)
    records = []
    for doc, prompt_text, prediction in zip(docs, prompts, raw, strict=True):
        if adapter.applies_until:
            prediction = truncate_until(prediction, task.until)
        record = bench.score(doc, prediction, mode=mode, rng=rng)
        records.append({"prompt": prompt_text, "raw_prediction": prediction, **record})
    return records, bench.aggregate(records)
