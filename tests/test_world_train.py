"""The tiny model's trainer: stage settings, length-grouped batches, the stage cache."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_image

from atvprune.world.train import (
    Example,
    Stage,
    TrainSettings,
    length_grouped_batches,
    stage_settings,
    train,
)

SETTINGS = TrainSettings(
    batch_size=4,
    learning_rate=1e-3,
    warmup_steps=2,
    min_lr_ratio=0.1,
    weight_decay=0.0,
    grad_clip=1.0,
    seed=5,
)


def test_stage_settings_apply_the_schedule_learning_rate_and_seed():
    constant = Stage("focus", ("pope",), steps=30, schedule="constant")
    cosine = Stage("mix", ("pope", "gqa"), steps=40, learning_rate=3e-4)
    first = stage_settings(SETTINGS, constant, 0)
    assert (first.steps, first.min_lr_ratio, first.learning_rate, first.seed) == (
        30,
        1.0,
        1e-3,
        5,
    )
    later = stage_settings(SETTINGS, cosine, 2)
    assert (later.steps, later.min_lr_ratio, later.learning_rate, later.seed) == (
        40,
        0.1,
        3e-4,
        7,
    )
    with pytest.raises(ValueError, match="stage 'x': schedule must be"):
        Stage("x", ("pope",), steps=1, schedule="linear")


def test_length_grouped_batches_sort_within_groups_and_drop_the_rest():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11]
    generator = torch.Generator().manual_seed(0)
    batches = length_grouped_batches(lengths, 2, generator, batches_per_group=2)
    # 11 examples, groups of 4: [4, 4, 3] -> 2 + 2 + 1 full batches; 1 example dropped.
    assert len(batches) == 5 and all(len(b) == 2 for b in batches)
    used = [i for b in batches for i in b]
    assert len(set(used)) == 10
    for batch in batches:
        assert lengths[batch[0]] >= lengths[batch[1]]
    again = length_grouped_batches(
        lengths, 2, torch.Generator().manual_seed(0), batches_per_group=2
    )
    assert again == batches
    # One group of all examples: batches are the sorted order cut in pairs.
    whole = length_grouped_batches(
        lengths, 2, torch.Generator().manual_seed(1), batches_per_group=6
    )
    pairs = sorted(sorted(lengths[i] for i in b) for b in whole)
    assert pairs == [
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
        [10, 11],
    ]  # the shortest is dropped
    with pytest.raises(ValueError, match="3 training examples cannot fill"):
        length_grouped_batches([1, 2, 3], 4, generator)


def test_training_without_a_stage_length_is_refused(tiny_llava):
    model, processor, _ = tiny_llava
    with pytest.raises(ValueError, match="train needs steps >= 1, got 0"):
        train(model, processor, [], SETTINGS, log=lambda _: None)


def test_the_stage_cache_does_not_change_training(tiny_llava):
    model, processor, _ = tiny_llava
    examples = [
        Example(
            image=random_image(i),
            turns=(
                ("user", "is there a red circle"),
                ("assistant", "yes" if i % 2 else "no"),
            )
            + (("user", "describe the image"), ("assistant", "a blue square"))
            * (i % 3),
        )
        for i in range(12)
    ]
    settings = stage_settings(SETTINGS, Stage("s", ("pope",), steps=3), 0)
    plain, cached = copy.deepcopy(model), copy.deepcopy(model)
    train(plain, processor, examples, settings, log=lambda _: None)
    cache: dict = {}
    train(cached, processor, examples[:6], settings, log=lambda _: None, cache=cache)
    cached = copy.deepcopy(model)  # the warm cache, a fresh model
    train(cached, processor, examples, settings, log=lambda _: None, cache=cache)
    assert any(key[0] == "pixels" for key in cache)
    for (name, a), (_, b) in zip(
        plain.state_dict().items(), cached.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not torch.equal(
        plain.state_dict()["lm_head.weight"], model.state_dict()["lm_head.weight"]
    )
