"""Qwen2-VL and Qwen2.5-VL adapters on tiny random-init models built from the real
config, model and processor classes: image-token mask, the 1-D position quirk versus
true mRoPE, TAMP's attention row, and the engine end to end."""

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
from atvprune.models.tiny import tiny_qwen
from atvprune.pruners import build_pruner

FAMILIES = {"2": "qwen2_vl", "2.5": "qwen2_5_vl"}


def image(seed: int, height: int, width: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3))
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def record(i: int, height: int = 24, width: int = 40) -> dict:
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


@pytest.fixture(scope="module", params=["2", "2.5"])
def tiny(request):
    model, processor = tiny_qwen(request.param, seed=0, layers=2)
    return model, processor, FAMILIES[request.param]


@pytest.fixture(scope="module")
def pool(tiny):
    model, processor, family = tiny
    records = [record(0), record(1, 16, 16), record(2, 32, 24)]
    return build_pool(records, processor, get_adapter(family), model.config)


def test_mask_is_exactly_the_image_pad_tokens(tiny, pool):
    """24x40 image -> 24x40 pixels (multiples of 8 within the pixel budget) -> a 6x10
    patch grid -> 60 / (2x2 merge) = 15 image pads between vision start and end."""
    model, _, family = tiny
    adapter = get_adapter(family)
    config = model.config
    ids, mask = pool[0]["input_ids"], pool[0]["image_mask"]
    assert pool[0]["image_grid_thw"].tolist() == [[1, 6, 10]]
    assert int(mask.sum()) == 15
    where = mask.nonzero().flatten()
    start, end = int(where[0]), int(where[-1])
    assert end - start + 1 == 15
    assert int(ids[start - 1]) == config.vision_start_token_id
    assert int(ids[end + 1]) == config.vision_end_token_id
    assert not mask[start - 1] and not mask[end + 1]  # start/end tokens are text
    # Hand-made ids: only the pad id counts, wherever it sits.
    pad, vs, ve = (
        config.image_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
    )
    synthetic = torch.tensor([2, vs, pad, pad, ve, 9, pad, 3])
    expected = [False, False, True, True, False, False, True, False]
    assert adapter.image_mask_from_ids(config, synthetic).tolist() == expected


def _model_hidden_states(model, adapter, sample):
    inputs = adapter.forward_inputs(sample, dtype=torch.float32)
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True).hidden_states


def _replay(model, adapter, sample):
    """Every decoder layer's output from run_layer on the captured layer-0 inputs."""
    captured = capture(model, adapter, [sample])[0]
    hidden, outputs = captured.hidden, []
    with torch.no_grad():
        for layer in adapter.decoder_layers(model):
            hidden = adapter.run_layer(layer, hidden, captured.layer_kwargs)
            outputs.append(hidden)
    outputs[-1] = adapter.language_model(model).norm(outputs[-1])
    return captured, outputs


def test_true_mrope_replays_the_models_own_hidden_states(tiny, pool):
    model, _, family = tiny
    adapter = get_adapter(family + "_mrope")
    expected = _model_hidden_states(model, adapter, pool[0])
    captured, outputs = _replay(model, adapter, pool[0])
    assert torch.equal(captured.hidden, expected[0])
    for i, out in enumerate(outputs):
        torch.testing.assert_close(out, expected[i + 1], rtol=0, atol=1e-6)


def test_one_d_quirk_is_default_and_differs_after_the_first_image_token(tiny, pool):
    """Default mode = the official code: all three mRoPE axes get 0..L-1. Before the
    first image token the 3-D positions are 0..k as well, so (causal attention) those
    outputs match the model exactly; from the image on they differ."""
    model, _, family = tiny
    adapter = get_adapter(family)
    assert adapter.true_mrope is False
    expected = _model_hidden_states(model, adapter, pool[0])
    captured, outputs = _replay(model, adapter, pool[0])
    assert "position_embeddings" not in captured.layer_kwargs
    first = int(captured.image_mask.nonzero()[0])
    for i, out in enumerate(outputs):
        torch.testing.assert_close(
            out[:, :first], expected[i + 1][:, :first], rtol=0, atol=1e-6
        )
        # The first image token's 3-D position is (first, first, first) in both;
        # the grid positions after it are not. Random-init attention is nearly
        # uniform, so the effect is small, but far above float noise (~1e-7).
        gap = (out[0, first + 1 :] - expected[i + 1][0, first + 1 :]).abs()
        assert float(gap.detach().max()) > 1e-5
    # The rebuilt embeddings are plain 1-D RoPE on every axis.
    layer = adapter.decoder_layers(model)[0]
    cos, sin = adapter.position_embeddings(
        layer, captured.hidden, captured.layer_kwargs
    )
    length = captured.hidden.shape[1]
    assert cos.shape[0] == 3
    assert torch.equal(cos[0], cos[1]) and torch.equal(cos[1], cos[2])
    inv_freq = layer.self_attn.rotary_emb.inv_freq
    angles = torch.arange(length).float()[:, None] * inv_freq[None]
    torch.testing.assert_close(cos[0, 0], torch.cat([angles, angles], -1).cos())


def test_quirk_equals_the_model_on_text_only_input(tiny):
    """Without an image Qwen's 3-D positions are 1-D, so the quirk changes nothing."""
    model, processor, family = tiny
    adapter = get_adapter(family)
    ids = processor.tokenizer("describe the image a red circle", return_tensors="pt")
    inputs = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    with torch.no_grad():
        expected = model(**inputs, output_hidden_states=True).hidden_states
    captured = adapter.capture_layer_inputs(model, inputs)
    hidden = captured.hidden
    with torch.no_grad():
        hidden = adapter.run_layer(
            adapter.decoder_layers(model)[0], hidden, captured.layer_kwargs
        )
    torch.testing.assert_close(hidden, expected[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mrope", [False, True])
def test_last_token_attention_uses_the_same_positions_as_run_layer(tiny, pool, mrope):
    """With true mRoPE the row equals the eager model's own attention; with the quirk
    it equals eager attention under 1-D positions (the model fed 1-D position_ids)."""
    model, _, family = tiny
    adapter = get_adapter(family + ("_mrope" if mrope else ""))
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    inputs = adapter.forward_inputs(pool[0], dtype=torch.float32)
    if not mrope:
        length = inputs["input_ids"].shape[1]
        inputs["position_ids"] = torch.arange(length).view(1, 1, -1).expand(3, 1, -1)
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    captured = capture(model, adapter, pool[:1])[0]
    layer = adapter.decoder_layers(model)[0]
    with torch.no_grad():
        row = adapter.last_token_attention(
            layer, captured.hidden, captured.layer_kwargs
        )
    torch.testing.assert_close(row, attentions[0][0, :, -1].mean(0), rtol=0, atol=1e-6)


def test_pool_round_trip_keeps_grid_sizes(tiny, pool, tmp_path):
    model, _, family = tiny
    adapter = get_adapter(family)
    save_pool(pool, tmp_path / "pool", {"seed": 0})
    loaded = load_pool(tmp_path / "pool")
    for a, b in zip(loaded, pool, strict=True):
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a if k != "id")
    assert torch.equal(
        capture(model, adapter, loaded[1:2])[0].hidden,
        capture(model, adapter, pool[1:2])[0].hidden,
    )


@pytest.mark.parametrize(
    ("spec", "pattern", "mrope"),
    [
        ({"method": "magnitude"}, "0.6", False),
        ({"method": "wanda"}, "0.5", False),
        ({"method": "sparsegpt"}, "0.5", False),
        ({"method": "tamp"}, "2:4", False),
        ({"method": "atv", "alpha": 1.0}, "0.6", False),
        ({"method": "atv", "alpha": 1.0}, "4:8", True),
    ],
)
def test_engine_prunes_end_to_end_and_model_still_generates(
    tiny, pool, spec, pattern, mrope
):
    model, processor, family = tiny
    adapter = get_adapter(family + ("_mrope" if mrope else ""))
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    samples = capture(model, adapter, pool)
    parsed = SparsityPattern.parse(pattern)
    pruner = build_pruner(spec, adapter=adapter)
    stats = prune_model(model, adapter, samples, pruner, parsed, progress=False)
    assert stats["overall_sparsity"] == pytest.approx(parsed.sparsity, abs=0.02)
    for layer in adapter.decoder_layers(model):
        linears = find_linears(layer)
        assert len(linears) == 7
        for linear in linears.values():
            share = float((linear.weight == 0).float().mean())
            assert share == pytest.approx(parsed.sparsity, abs=0.02)
    # Nothing but the decoder Linear weights changes: not the q/k/v biases, not the
    # vision tower or merger, not the embeddings, norms or lm_head.
    for name, param in model.named_parameters():
        if not (".layers." in name and name.endswith("_proj.weight")):
            assert torch.equal(param, before[name]), name
        elif "language_model" not in name:
            assert torch.equal(param, before[name]), name
    answers = generate(
        model,
        processor,
        adapter,
        [image(5, 24, 40), image(6, 16, 32)],
        ["describe the image", "is there a red circle"],
        max_new_tokens=3,
        batch_size=2,
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_generation_batches_use_lmms_evals_pixel_bounds(tiny):
    """24x40 image. qwen2_vl wrapper (min 3136 px): upscaled by sqrt(3136 / 960) to
    48x80 -> a 12x20 patch grid. qwen2_5_vl chat wrapper (min 200704 px): 352x584 ->
    88x146. Calibration keeps the processor defaults (6x10 here)."""
    _, processor, family = tiny
    adapter = get_adapter(family)
    batch = adapter.encode_for_generation(
        processor, [image(0, 24, 40)], ["<|vision_start|><|image_pad|><|vision_end|>"]
    )
    expected = {"qwen2_vl": [[1, 12, 20]], "qwen2_5_vl": [[1, 88, 146]]}[family]
    assert batch["image_grid_thw"].tolist() == expected
    calibration = adapter.encode(processor, image(0, 24, 40), "<|image_pad|>")
    assert calibration["image_grid_thw"].tolist() == [[1, 6, 10]]


def test_load_from_a_saved_directory_without_torchvision(tiny, pool, tmp_path):
    """adapter.load assembles the processor itself: AutoProcessor would demand the
    torchvision-only video processor. The loaded pair encodes and runs like the
    original."""
    model, processor, family = tiny
    adapter = get_adapter(family)
    model.save_pretrained(tmp_path)
    processor.image_processor.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").write_text(processor.chat_template)
    loaded, loaded_processor = adapter.load(tmp_path, "float32")
    assert type(loaded) is type(model)
    assert type(loaded_processor) is type(processor)
    turns = [("user", "describe the image"), ("assistant", "a red circle")]
    text = adapter.chat_text(loaded_processor, turns, generation=False)
    assert text == adapter.chat_text(processor, turns, generation=False)
    again = adapter.encode(loaded_processor, image(0, 24, 40), text)
    first = adapter.encode(processor, image(0, 24, 40), text)
    assert all(torch.equal(again[k], first[k]) for k in first)
    inputs = adapter.forward_inputs(adapter.pool_tensors(first))
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
