"""The sequential layer-wise engine against a plain port of the reference loop."""

from __future__ import annotations

import copy

import pytest
import torch

from atvprune import methods
from atvprune.calibration import capture
from atvprune.engine import SparsityPattern, find_linears, prune_model
from atvprune.pruners import build_pruner

LINEAR_NAMES = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


def reference_loop(model, adapter, samples, sparsity, token_rule):
    """methods.md 1.3 written out plainly: separate dense drift pass, dense hook pass
    storing every Linear input, masks, then a pruned pass feeding the next layer."""
    layers = adapter.decoder_layers(model)
    inputs = [s.hidden for s in samples]
    masks = [s.image_mask for s in samples]
    kwargs = [s.layer_kwargs for s in samples]
    all_masks = {}
    with torch.no_grad():
        for i, layer in enumerate(layers):
            dense_out = [
                adapter.run_layer(layer, h, kw)
                for h, kw in zip(inputs, kwargs, strict=True)
            ]
            chosen = token_rule(inputs, dense_out, masks)
            seen: dict[str, list[torch.Tensor]] = {n: [] for n in LINEAR_NAMES}
            handles = [
                module.register_forward_hook(
                    lambda m, a, o, n=name, seen=seen: seen[n].append(a[0][0].clone())
                )
                for name, module in find_linears(layer).items()
            ]
            for h, kw in zip(inputs, kwargs, strict=True):
                adapter.run_layer(layer, h, kw)
            for handle in handles:
                handle.remove()
            for name, linear in find_linears(layer).items():
                tokens = [chosen(j, x) for j, x in enumerate(seen[name])]
                scaler = methods.scaler_row(tokens)
                mask = methods.wanda_mask(linear.weight.data, scaler, sparsity)
                linear.weight.data[mask] = 0
                all_masks[f"layer{i}.{name}"] = mask
            inputs = [
                adapter.run_layer(layer, h, kw)
                for h, kw in zip(inputs, kwargs, strict=True)
            ]
    return all_masks


def all_tokens(inputs, outputs, masks):
    return lambda j, x: x


def atv_tokens(alpha):
    def rule(inputs, outputs, masks):
        x_in = [h[0] for h in inputs]
        x_out = [o[0] for o in outputs]
        _, _, index = methods.atv_select(x_in, x_out, masks, alpha)
        return lambda j, x: methods.calibration_tokens(x, masks[j], index[j])

    return rule


def engine_masks(model, adapter, pool, spec, pattern="0.5"):
    samples = capture(model, adapter, pool)
    pruner = build_pruner(spec)
    stats = prune_model(
        model, adapter, samples, pruner, SparsityPattern.parse(pattern), progress=False
    )
    masks = {
        f"layer{i}.{name}": lin.weight.data == 0
        for i, layer in enumerate(adapter.decoder_layers(model))
        for name, lin in find_linears(layer).items()
    }
    return stats, masks


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ({"method": "wanda"}, all_tokens),
        ({"method": "atv", "alpha": 1.0}, atv_tokens(1.0)),
    ],
)
def test_engine_matches_reference_loop(fresh_model, tiny_pool, spec, rule):
    model, _, adapter = fresh_model
    reference_model = copy.deepcopy(model)
    stats, masks = engine_masks(model, adapter, tiny_pool, spec)
    samples = capture(reference_model, adapter, tiny_pool)
    expected = reference_loop(reference_model, adapter, samples, 0.5, rule)
    assert set(masks) == set(expected)
    for key in expected:
        assert torch.equal(masks[key], expected[key]), key
    assert stats["overall_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_every_decoder_linear_pruned_and_nothing_else(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    before = {n: p.clone() for n, p in model.named_parameters()}
    stats, _ = engine_masks(model, adapter, tiny_pool, {"method": "wanda"}, "0.5")
    for name, param in model.named_parameters():
        is_target = "language_model.layers." in name and name.endswith("_proj.weight")
        if is_target:
            row_zeros = (param == 0).sum(dim=1)
            assert torch.all(row_zeros == int(param.shape[1] * 0.5)), name
        else:
            assert torch.equal(param, before[name]), f"{name} must not be pruned"
    assert len(stats["mask_sha256"]) == 7 * len(adapter.decoder_layers(model))
    assert all(len(record["linears"]) == 7 for record in stats["layers"])


def test_atv_alpha_zero_equals_text_only(tiny_llava, tiny_pool):
    model, _, adapter = tiny_llava
    _, alpha0 = engine_masks(
        copy.deepcopy(model), adapter, tiny_pool, {"method": "atv", "alpha": 0.0}
    )
    _, text = engine_masks(
        copy.deepcopy(model), adapter, tiny_pool, {"method": "atv_text_only"}
    )
    assert all(torch.equal(alpha0[k], text[k]) for k in alpha0)


def test_atv_records_drift_and_budget(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    stats, _ = engine_masks(model, adapter, tiny_pool, {"method": "atv", "alpha": 1.0})
    n_img = [int(s["image_mask"].sum()) for s in tiny_pool]
    for record in stats["layers"]:
        assert record["mean_drift"] > 0
        assert len(record["k"]) == len(tiny_pool)
        assert all(0 <= k <= cap for k, cap in zip(record["k"], n_img, strict=True))


def test_magnitude_needs_no_calibration_and_matches_function(fresh_model):
    model, _, adapter = fresh_model
    expected = {
        f"layer{i}.{n}": methods.magnitude_mask(lin.weight.data.clone(), 0.6)
        for i, layer in enumerate(adapter.decoder_layers(model))
        for n, lin in find_linears(layer).items()
    }
    pruner = build_pruner({"method": "magnitude"})
    prune_model(
        model, adapter, [], pruner, SparsityPattern.parse("0.6"), progress=False
    )
    for i, layer in enumerate(adapter.decoder_layers(model)):
        for n, lin in find_linears(layer).items():
            assert torch.equal(lin.weight.data == 0, expected[f"layer{i}.{n}"])


def test_nm_pattern_prunes_two_of_every_four(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    engine_masks(model, adapter, tiny_pool, {"method": "atv"}, "2:4")
    for layer in adapter.decoder_layers(model):
        for lin in find_linears(layer).values():
            groups = (lin.weight.data == 0).reshape(lin.weight.shape[0], -1, 4).sum(-1)
            assert torch.all(groups == 2)


def test_non_finite_activations_abort_naming_the_layer(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    samples = capture(model, adapter, tiny_pool)
    layer0 = adapter.decoder_layers(model)[0]
    layer0.mlp.down_proj.bias = torch.nn.Parameter(
        torch.full((layer0.mlp.down_proj.out_features,), float("nan"))
    )
    with pytest.raises(FloatingPointError, match="decoder layer 0"):
        prune_model(
            model,
            adapter,
            samples,
            build_pruner({"method": "wanda"}),
            SparsityPattern.parse("0.5"),
            progress=False,
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0", "outside"),
        ("-0.1", "outside"),
        ("abc", "malformed"),
        ("4:2", "N < M"),
        ("2:x", "malformed"),
    ],
)
def test_bad_patterns_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        SparsityPattern.parse(text)


def test_unknown_method_is_named():
    with pytest.raises(KeyError, match="no_such_method"):
        build_pruner({"method": "no_such_method"})


def test_tamp_selects_tokens_per_linear_and_prunes_per_row(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    samples = capture(model, adapter, tiny_pool)
    pruner = build_pruner({"method": "tamp"}, adapter=adapter)
    stats = prune_model(
        model, adapter, samples, pruner, SparsityPattern.parse("0.5"), progress=False
    )
    lengths = [int(s["input_ids"].numel()) for s in tiny_pool]
    for record in stats["layers"]:
        counts = record["tamp_selected"]
        assert set(counts) == set(LINEAR_NAMES)
        for per_sample in counts.values():
            assert len(per_sample) == len(tiny_pool)
            assert all(1 <= c <= n for c, n in zip(per_sample, lengths, strict=True))
    assert stats["overall_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_sparsegpt_updates_kept_weights_from_the_hessian(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    layer0 = adapter.decoder_layers(model)[0]
    before = layer0.self_attn.q_proj.weight.data.clone()
    samples = capture(model, adapter, tiny_pool)
    expected_inputs = [layer0.input_layernorm(s.hidden)[0] for s in samples]
    expected_weight, expected_mask = methods.sparsegpt_prune(
        before, methods.hessian(expected_inputs), 0.5
    )
    prune_model(
        model,
        adapter,
        samples,
        build_pruner({"method": "sparsegpt"}),
        SparsityPattern.parse("0.5"),
        progress=False,
    )
    after = layer0.self_attn.q_proj.weight.data
    assert torch.equal(after == 0, expected_mask | (expected_weight == 0))
    assert torch.allclose(after, expected_weight, atol=1e-5)
    kept = ~expected_mask
    assert not torch.allclose(after[kept], before[kept])  # OBS moved the survivors


def test_tamp_das_allocates_per_linear_sparsity_from_dense_density(
    fresh_model, tiny_pool
):
    model, _, adapter = fresh_model
    samples = capture(model, adapter, tiny_pool)
    # Independent DAS scores: every Linear's output on the dense model's own hidden
    # states (output_hidden_states), density terms averaged over samples.
    layers = adapter.decoder_layers(model)
    expected_scores = {}
    with torch.no_grad():
        for sample in samples:
            hidden = sample.hidden
            for i, layer in enumerate(layers):
                outputs = {}
                handles = [
                    lin.register_forward_hook(
                        lambda m, a, o, n=name, outputs=outputs: outputs.__setitem__(
                            n, o[0]
                        )
                    )
                    for name, lin in find_linears(layer).items()
                ]
                hidden_next = adapter.run_layer(layer, hidden, sample.layer_kwargs)
                for h in handles:
                    h.remove()
                for name, y in outputs.items():
                    d = methods.modality_density(y, sample.image_mask)
                    key = f"layer{i}.{name}"
                    total = expected_scores.get(key, 0.0)
                    expected_scores[key] = total + methods.das_score(
                        d.m_vv, d.m_tt, d.m_vt
                    ) / len(samples)
                hidden = hidden_next
    pruner = build_pruner({"method": "tamp_das"}, adapter=adapter)
    stats = prune_model(
        model, adapter, samples, pruner, SparsityPattern.parse("0.5"), progress=False
    )
    assert stats["das_max_sparsity"] == pytest.approx(0.6)
    assert set(stats["das_scores"]) == set(expected_scores)
    for key, value in expected_scores.items():
        assert stats["das_scores"][key] == pytest.approx(value, abs=1e-5)
    allocated = stats["das_sparsity"]
    assert max(allocated.values()) <= 0.6 + 1e-9
    # Scores differ across Linears, so the allocation is not uniform...
    assert max(allocated.values()) - min(allocated.values()) > 0.01
    for record in stats["layers"]:
        linears = find_linears(layers[record["layer"]])
        for name, achieved in record["linears"].items():
            # ...and each Linear is pruned per row to its own allocated sparsity:
            # int(in_features * s) weights of every row.
            in_features = linears[name].in_features
            per_row = int(in_features * allocated[f"layer{record['layer']}.{name}"])
            assert achieved == pytest.approx(per_row / in_features, abs=1e-6)
    assert stats["overall_sparsity"] == pytest.approx(0.5, abs=0.03)


def test_tamp_das_refuses_nm_patterns(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    samples = capture(model, adapter, tiny_pool)
    pruner = build_pruner({"method": "tamp_das"}, adapter=adapter)
    with pytest.raises(ValueError, match="tamp_das.*2:4"):
        prune_model(model, adapter, samples, pruner, SparsityPattern.parse("2:4"))


def test_prefix_inputs_reproduce_the_full_layer_outputs(fresh_model, tiny_pool):
    model, _, adapter = fresh_model
    layer = adapter.decoder_layers(model)[0]
    from atvprune.engine import prefix_inputs

    for sample in capture(model, adapter, tiny_pool):
        full = adapter.run_layer(layer, sample.hidden, sample.layer_kwargs)
        length = int(sample.image_mask.nonzero().max()) + 1
        assert length < sample.hidden.shape[1]  # text follows the image
        prefix = adapter.run_layer(
            layer, *prefix_inputs(sample.hidden, sample.layer_kwargs, length)
        )
        assert prefix.shape[1] == length
        torch.testing.assert_close(prefix[0], full[0, :length], atol=1e-6, rtol=1e-5)


def test_atv_drift_prefixes_run_as_one_batch_and_match_per_sample(
    fresh_model, tiny_pool
):
    from atvprune.engine import LayerContext, prefix_inputs
    from atvprune.pruners import _same_layer_inputs

    model, _, adapter = fresh_model
    samples = capture(model, adapter, tiny_pool)
    layer = adapter.decoder_layers(model)[0]
    prefixes = []
    for s in samples:
        length = int(s.image_mask.nonzero().max()) + 1
        prefixes.append((*prefix_inputs(s.hidden, s.layer_kwargs, length), None))
    # The chat template puts the image at the same place: one batched forward.
    assert _same_layer_inputs(prefixes) == [list(range(len(samples)))]
    ctx = LayerContext(
        index=0,
        layer=layer,
        inputs=[s.hidden for s in samples],
        image_masks=[s.image_mask for s in samples],
        layer_kwargs=[s.layer_kwargs for s in samples],
        run_dense=lambda h, kw: adapter.run_layer(layer, h, kw),
    )
    pruner = build_pruner({"method": "atv"})
    batched = pruner._dense_drifts(ctx)
    with torch.no_grad():
        for s, drift in zip(samples, batched, strict=True):
            out = adapter.run_layer(layer, s.hidden, s.layer_kwargs)
            mask = s.image_mask
            expected = methods.visual_drift(s.hidden[0][mask], out[0][mask])
            torch.testing.assert_close(drift, expected, atol=1e-6, rtol=1e-5)


def test_calibration_positions_select_the_rows_of_calibration_tokens():
    from atvprune.pruners import _calibration_positions

    mask = torch.tensor([False, True, True, False, True, False])
    index = torch.tensor([0, 2])  # first and third visual token (positions 1 and 4)
    positions = _calibration_positions(mask, index)
    assert positions.tolist() == [0, 3, 5, 1, 4]
    x = torch.arange(6.0)[:, None].repeat(1, 3)
    assert torch.equal(
        x.index_select(0, positions), methods.calibration_tokens(x, mask, index)
    )
