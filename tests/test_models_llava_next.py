"""LLaVA-NeXT adapter on a tiny random-init `LlavaNextForConditionalGeneration` with a
real `LlavaNextProcessor` (anyres tiling): image-token mask, layer replay, engine."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from atvprune.calibration import build_pool, capture, load_pool, save_pool
from atvprune.engine import SparsityPattern, find_linears, prune_model
from atvprune.evaluate import generate
from atvprune.models import get_adapter
from atvprune.models.tiny import tiny_llava_next
from atvprune.pruners import build_pruner


def image(seed: int, height: int, width: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3))
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def record(i: int, height: int = 20, width: int = 36) -> dict:
    return {
        "id": f"c{i}",
        "image": image(i, height, width),
        "conversations": [
            {"from": "human", "value": "<image>\ndescribe the image"},
            {"from": "gpt", "value": "a red circle" + " two" * i},
            {"from": "human", "value": "is there a square"},
            {"from": "gpt", "value": "no"},
        ],
    }


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_llava_next(seed=0, layers=2)
    return model, processor, get_adapter("llava_next")


@pytest.fixture(scope="module")
def pool(tiny):
    model, processor, adapter = tiny
    records = [record(0), record(1, 36, 20), record(2, 16, 16)]
    return build_pool(records, processor, adapter, model.config)


def test_mask_counts_base_tile_unpadded_grid_and_newlines(tiny, pool):
    """20x36 image: best pinpoint 32x32 -> 2x2 tiles of 4x4 patches = an 8x8 grid,
    unpadded to 4 rows (round(20 * 8 / 36) = 4) x 8 columns, one newline per row, plus
    the 4x4 base tile: 16 + 4 * 8 + 4 = 52 visual tokens, contiguous."""
    model, processor, adapter = tiny
    mask = pool[0]["image_mask"]
    assert int(mask.sum()) == 52
    where = mask.nonzero().flatten()
    assert torch.equal(where, torch.arange(where[0], where[0] + 52))
    image_id = model.config.image_token_id
    assert torch.equal(mask, pool[0]["input_ids"] == image_id)
    # The chat-template tokens around the image are text.
    assert not mask[: int(where[0])].any() and not mask[int(where[-1]) + 1 :].any()


def test_newline_positions_are_visual_and_hold_image_newline(tiny, pool):
    """The layer-0 input at the row ends of the unpadded grid is exactly the learned
    `image_newline` vector: those positions are visual tokens (methods.md 1.2)."""
    model, _, adapter = tiny
    sample = capture(model, adapter, pool[:1])[0]
    visual = sample.hidden[0][sample.image_mask]
    newline = model.model.image_newline
    is_newline = (visual == newline).all(dim=-1)
    assert is_newline.nonzero().flatten().tolist() == [24, 33, 42, 51]


def test_run_layer_replays_the_models_own_hidden_states(tiny, pool):
    model, _, adapter = tiny
    inputs = adapter.forward_inputs(pool[0], dtype=torch.float32)
    with torch.no_grad():
        expected = model(**inputs, output_hidden_states=True).hidden_states
    sample = capture(model, adapter, pool[:1])[0]
    layers = adapter.decoder_layers(model)
    hidden = sample.hidden
    assert torch.equal(hidden, expected[0])
    with torch.no_grad():
        for i, layer in enumerate(layers):
            hidden = adapter.run_layer(layer, hidden, sample.layer_kwargs)
            if i + 1 < len(layers):
                torch.testing.assert_close(hidden, expected[i + 1], rtol=0, atol=1e-6)
        final = adapter.language_model(model).norm(hidden)
    torch.testing.assert_close(final, expected[-1], rtol=0, atol=1e-6)


def test_last_token_attention_equals_eager_attention_row(tiny, pool):
    model, _, adapter = tiny
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    inputs = adapter.forward_inputs(pool[0], dtype=torch.float32)
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    sample = capture(model, adapter, pool[:1])[0]
    layer = adapter.decoder_layers(model)[0]
    with torch.no_grad():
        row = adapter.last_token_attention(layer, sample.hidden, sample.layer_kwargs)
    torch.testing.assert_close(row, attentions[0][0, :, -1].mean(0), rtol=0, atol=1e-6)


def test_pool_round_trip_keeps_image_sizes(tiny, pool, tmp_path):
    model, _, adapter = tiny
    save_pool(pool, tmp_path / "pool", {"seed": 0})
    loaded = load_pool(tmp_path / "pool")
    assert [s["id"] for s in loaded] == [s["id"] for s in pool]
    for a, b in zip(loaded, pool, strict=True):
        assert (
            set(a)
            == set(b)
            == {
                "id",
                "input_ids",
                "pixel_values",
                "image_sizes",
                "image_mask",
            }
        )
        assert all(torch.equal(a[k], b[k]) for k in a if k != "id")
    again = capture(model, adapter, loaded[:1])[0]
    first = capture(model, adapter, pool[:1])[0]
    assert torch.equal(again.hidden, first.hidden)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ({"method": "magnitude"}, "0.5"),
        ({"method": "wanda"}, "0.6"),
        ({"method": "sparsegpt"}, "2:4"),
        ({"method": "tamp"}, "0.5"),
        ({"method": "atv", "alpha": 1.0}, "4:8"),
    ],
)
def test_engine_prunes_end_to_end_and_model_still_generates(tiny, pool, spec, pattern):
    model, processor, adapter = tiny
    model = copy.deepcopy(model)
    samples = capture(model, adapter, pool)
    parsed = SparsityPattern.parse(pattern)
    stats = prune_model(
        model, adapter, samples, build_pruner(spec, adapter=adapter), parsed, False
    )
    assert stats["overall_sparsity"] == pytest.approx(parsed.sparsity, abs=0.02)
    assert len(stats["mask_sha256"]) == 7 * len(adapter.decoder_layers(model))
    for layer in adapter.decoder_layers(model):
        for linear in find_linears(layer).values():
            share = float((linear.weight == 0).float().mean())
            assert share == pytest.approx(parsed.sparsity, abs=0.02)
    patch = model.model.vision_tower.vision_model.embeddings.patch_embedding.weight
    assert float((patch == 0).float().mean()) < 0.01  # the vision tower is untouched
    answers = generate(
        model,
        processor,
        adapter,
        [image(5, 20, 36), image(6, 30, 12)],
        ["describe the image", "is there a red circle"],
        max_new_tokens=3,
        batch_size=2,
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
