"""Shared fixtures: a tiny random-init LLaVA (real classes), a calibration pool, and the
session's end-to-end runs (tests/background.py)."""

from __future__ import annotations

import os

# OpenMP threads waiting at a barrier sleep instead of spinning. The end-to-end runs
# overlap with each other and with the in-process tests on 2 cores, and a spinning
# thread steals the core from the thread it waits for. Measured here on a shortened
# smoke training beside other work: two at once took 122-138 s each with the default
# policy and 25 s each with PASSIVE (one alone: 33 s and 15 s). Only idle threads
# change; the same model bytes come out. Set before torch (and its OpenMP runtime) is
# loaded; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from background import BackgroundRuns, wanted_fixtures  # noqa: E402
from PIL import Image  # noqa: E402
from slurm_cluster import slurm_skip_reason  # noqa: E402

from atvprune.calibration import build_pool  # noqa: E402
from atvprune.models import get_adapter  # noqa: E402
from atvprune.world.tiny_llava import (  # noqa: E402
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


# Fixtures of the runs tests/background.py starts early, and what starts them.
BACKGROUND_FIXTURES = (
    "smoke_run",
    "smoke_run_again",
    "slurm_failing_run",
    "slurm_smoke_run",
)
SLURM_FIXTURES = ("slurm_cluster", "slurm_failing_run", "slurm_smoke_run")


def pytest_collection_modifyitems(session, config, items):
    """Tests that use an end-to-end run go last (in their usual order), so the unit
    tests run while those runs are still going in the background."""
    late = [i for i in items if set(BACKGROUND_FIXTURES) & set(i.fixturenames)]
    early = [i for i in items if i not in late]
    items[:] = early + late


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Starts, when the session starts, the end-to-end runs the selected tests need;
    kills whatever is still running and stops the SLURM test cluster at the end."""
    items = request.session.items
    slurm_usable = bool(wanted_fixtures(items, SLURM_FIXTURES)) and (
        slurm_skip_reason() is None
    )
    runs = BackgroundRuns(
        tmp_path_factory, wanted_fixtures(items, BACKGROUND_FIXTURES), slurm_usable
    )
    try:
        runs.start_early()
        yield runs
    finally:
        runs.stop()


@pytest.fixture(scope="session")
def smoke_run(background):
    """The smoke config run once per session (target `all`), shared by every test that
    needs a finished run."""
    return background.smoke("smoke_run")


@pytest.fixture(scope="session")
def smoke_run_again(background):
    """A second clean run of the smoke config in its own fresh directory, independent
    of `smoke_run` (it may run at the same time), for the determinism test."""
    return background.smoke("smoke_run_again")
