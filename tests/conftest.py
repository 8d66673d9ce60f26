"""Shared fixtures: a tiny random-init LLaVA (real classes) and a calibration pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from workflow_tools import copy_workflow, snakemake

from atvprune.calibration import build_pool
from atvprune.models import get_adapter
from atvprune.world.tiny_llava import (
    TinyLlavaSpec,
    build_model,
    build_processor,
    build_tokenizer,
)

TINY_SPEC = TinyLlavaSpec(
    image_size=32,
    patch_size=8,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    text_hidden=32,
    text_layers=3,
    text_heads=2,
    text_kv_heads=2,
    text_intermediate=64,
)

WORDS = "describe the image a red blue green circle square at top left right is there"
WORDS += " yes no"


def random_image(seed: int, size: int = 32) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(
        0, 256, (size, size, 3), dtype=np.uint8
    )
    return Image.fromarray(pixels, "RGB")


def conversation_record(i: int) -> dict:
    rng = np.random.default_rng(100 + i)
    words = WORDS.split()
    answer = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
    return {
        "id": f"conv{i}",
        "image": random_image(i),
        "conversations": [
            {"from": "human", "value": "<image>\ndescribe the image"},
            {"from": "gpt", "value": answer},
            {"from": "human", "value": "is there a red circle"},
            {"from": "gpt", "value": "yes" if i % 2 else "no"},
        ],
    }


@pytest.fixture(scope="session")
def tiny_llava():
    """(model, processor, adapter) for a random-init 3-layer LLaVA."""
    tokenizer = build_tokenizer([WORDS])
    processor = build_processor(tokenizer, TINY_SPEC)
    model = build_model(tokenizer, TINY_SPEC, seed=0).eval()
    return model, processor, get_adapter("llava")


@pytest.fixture(scope="session")
def tiny_pool(tiny_llava):
    model, processor, adapter = tiny_llava
    records = [conversation_record(i) for i in range(6)]
    return build_pool(records, processor, adapter, model.config)


@pytest.fixture
def fresh_model(tiny_llava):
    """A deep copy of the tiny model, safe to prune in place."""
    import copy

    model, processor, adapter = tiny_llava
    return copy.deepcopy(model), processor, adapter


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke config run once per session (target `all`), shared by every test that
    needs a finished run."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    result = snakemake(
        workdir, "--cores", "2", "all", "--configfile", "config/smoke.yaml"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
