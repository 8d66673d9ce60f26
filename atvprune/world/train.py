"""Instruction-tune the mini world's tiny LLaVA (CPU, a few minutes).

Each training example is one image plus a conversation (user turns, assistant turns). It
is rendered with the processor's chat template, so training sees exactly the prompt
format that calibration and evaluation use. The loss covers assistant tokens only
(answer + ``</s>``), as in LLaVA's instruction tuning.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm import tqdm

from atvprune.models.base import chat_messages

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One image and a conversation of (role, text) turns; role: "user"/"assistant"."""

    image: Image.Image
    turns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int
    learning_rate: float
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    grad_clip: float
    seed: int
    steps: int = 0  # set per stage (stage_settings)
    # The vision tower and projector start from random weights (no CLIP pre-training
    # here), so they get a larger step than the decoder to learn to see in minutes.
    vision_lr_scale: float = 1.0
    # After vision pre-training the tower stays frozen, as in LLaVA's instruction
    # tuning.
    freeze_vision_tower: bool = False


@dataclass(frozen=True)
class Stage:
    """One instruction-tuning stage: which train splits it sees, for how long, and how.

    ``tasks`` are benchmark train splits; ``conversations`` adds the ShareGPT4V-like
    caption + QA conversations. ``max_turns_per_image`` packs consecutive questions
    about one image into one sequence. ``schedule`` is "cosine" (warm-up, then decay to
    ``min_lr_ratio`` of the peak) or "constant" (warm-up, then the peak).
    ``learning_rate`` overrides the peak of the shared settings.
    """

    name: str
    tasks: tuple[str, ...]
    steps: int
    conversations: bool = False
    max_turns_per_image: int = 1
    schedule: str = "cosine"
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(
                f"stage {self.name!r}: schedule must be 'cosine' or 'constant', "
                f"got {self.schedule!r}"
            )


def stage_settings(settings: TrainSettings, stage: Stage, index: int) -> TrainSettings:
    """The shared optimiser settings specialised to one stage; stage ``index`` gets its
    own data order (seed + index)."""
    return dataclasses.replace(
        settings,
        steps=stage.steps,
        learning_rate=stage.learning_rate or settings.learning_rate,
        min_lr_ratio=1.0 if stage.schedule == "constant" else settings.min_lr_ratio,
        seed=settings.seed + index,
    )


def encode_example(processor, example: Example) -> tuple[list[int], list[int]]:
    """Token ids (image placeholder expanded) and labels: answer tokens + ``</s>`` only.

    The chat template is rendered turn by turn; the word-level tokenizer is prefix
    stable, so each turn adds exactly a new suffix. Before an assistant turn the
    generation prompt (``ASSISTANT:``) is rendered first, so the role tokens stay
    unlabelled, as in LLaVA.
    """
    ids: list[int] = []
    labels: list[int] = []
    n_image = num_image_tokens(processor)

    def extend(turns, generation: bool, labelled: bool) -> None:
        text = processor.apply_chat_template(
            chat_messages(turns), tokenize=False, add_generation_prompt=generation
        )
        full = processor.tokenizer(_expand_image(processor, text, n_image))["input_ids"]
        if full[: len(ids)] != ids:
            raise ValueError("chat template is not prefix-stable for this tokenizer")
        new = full[len(ids) :]
        ids.extend(new)
        labels.extend(new if labelled else [IGNORE_INDEX] * len(new))

    for upto in range(1, len(example.turns) + 1):
        if example.turns[upto - 1][0] == "assistant":
            extend(example.turns[: upto - 1], generation=True, labelled=False)
            extend(example.turns[:upto], generation=False, labelled=True)
        else:
            extend(example.turns[:upto], generation=False, labelled=False)
    return ids, labels


def _expand_image(processor, text: str, n_image: int) -> str:
    return text.replace(processor.image_token, processor.image_token * n_image)


def num_image_tokens(processor) -> int:
    """Image placeholder count, computed as LlavaProcessor does when given an image."""
    size = processor.image_processor.crop_size["height"]
    n = (size // processor.patch_size) ** 2 + processor.num_additional_image_tokens
    return n - 1 if processor.vision_feature_select_strategy == "default" else n


def pixel_batch(processor, images: Sequence[Image.Image]) -> torch.Tensor:
    return processor.image_processor(list(images), return_tensors="pt")["pixel_values"]


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak."""
    peak = settings.learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(
        1, settings.steps - settings.warmup_steps
    )
    floor = peak * settings.min_lr_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    model,
    processor,
    examples: Sequence[Example],
    settings: TrainSettings,
    log: Callable[[str], None] = print,
    cache: dict | None = None,
) -> list[dict]:
    """Train in place; returns the loss curve (one record per logged step).

    ``cache`` (a dict the caller keeps across stages) holds token ids per conversation
    and pixel tensors per image, so later stages do not encode the same data again.
    """
    if settings.steps < 1:
        # TrainSettings from the config's `train` section carry no steps; each stage
        # sets them (stage_settings). Never train zero steps silently.
        raise ValueError(
            f"train needs steps >= 1, got {settings.steps}; use stage_settings()"
        )
    torch.manual_seed(settings.seed)
    cache = {} if cache is None else cache
    encoded = []
    for ex in examples:
        key = ("text", ex.turns)
        if key not in cache:
            cache[key] = encode_example(processor, ex)
        encoded.append(cache[key])
    pixels = _cached_pixels(processor, [ex.image for ex in examples], cache)
    pad_id = processor.tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(settings.seed)
    if settings.freeze_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    vision = [p for n, p in trainable if _is_vision(n)]
    text = [p for n, p in trainable if not _is_vision(n)]
    optimizer = torch.optim.AdamW(
        [
            {"params": text, "lr_scale": 1.0},
            {"params": vision, "lr_scale": settings.vision_lr_scale},
        ],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        betas=(0.9, 0.98),
    )
    model.train()
    lengths = [len(ids) for ids, _ in encoded]
    batches: list[list[int]] = []
    curve = []
    started = time.perf_counter()
    running = None
    progress = tqdm(range(settings.steps), desc="train", unit="step", mininterval=5)
    for step in progress:
        if not batches:
            batches = length_grouped_batches(lengths, settings.batch_size, generator)
        index = batches.pop()
        input_ids, labels, attention = _collate([encoded[i] for i in index], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings) * group["lr_scale"]
        loss = model(
            input_ids=input_ids,
            attention_mask=attention,
            pixel_values=pixels[index],
            labels=labels,
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        value = loss.item()
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % 25 == 0 or step == settings.steps - 1:
            progress.set_postfix(loss=f"{running:.3f}")
            curve.append(
                {
                    "step": step,
                    "loss": round(value, 6),
                    "smoothed_loss": round(running, 6),
                    "lr": lr_at(step, settings),
                    "elapsed_s": round(time.perf_counter() - started, 3),
                }
            )
    model.eval()
    log(f"trained {settings.steps} steps in {time.perf_counter() - started:.1f}s")
    return curve


def _cached_pixels(
    processor, images: Sequence[Image.Image], cache: dict
) -> torch.Tensor:
    keys = [("pixels", image.tobytes()) for image in images]
    missing = {
        key: image for key, image in zip(keys, images, strict=True) if key not in cache
    }
    todo = list(missing.items())
    for start in range(0, len(todo), 512):
        chunk = todo[start : start + 512]
        values = pixel_batch(processor, [image for _, image in chunk])
        for (key, _), value in zip(chunk, values, strict=True):
            cache[key] = value
    return torch.stack([cache[key] for key in keys])


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    generator: torch.Generator,
    batches_per_group: int = 16,
) -> list[list[int]]:
    """One epoch of batches of similar-length examples (what LLaVA's trainer does with
    ``group_by_length``): shuffle, cut into groups of ``batches_per_group`` batches,
    sort each group by length, cut it into batches, shuffle the batch order. The last
    incomplete batch is dropped. Padding to the longest sequence of a batch then costs
    little (measured on the mixture with three questions per image: padded length /
    mean length 2.29 with random batches)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    group = batch_size * batches_per_group
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: -lengths[i])
        batches += [
            chunk[i : i + batch_size]
            for i in range(0, len(chunk) - batch_size + 1, batch_size)
        ]
    if not batches:
        raise ValueError(
            f"{len(lengths)} training examples cannot fill one batch of {batch_size}"
        )
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _is_vision(name: str) -> bool:
    return "vision_tower" in name or "multi_modal_projector" in name


def _collate(batch, pad_id: int):
    """Right-pad ids/labels of one batch; attention mask marks real tokens."""
    length = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(batch), length), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention[row, : len(ids)] = 1
    return input_ids, labels, attention
