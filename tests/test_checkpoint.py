"""Delta checkpoints: packed masks (or sparse values) over the base model, rebuilt bit
for bit, much smaller than a dense copy, and refused with a clear message when any
hash disagrees with its record."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from atvprune.calibration import capture
from atvprune.checkpoint import (
    DELTA,
    MANIFEST,
    CheckpointError,
    decode_tensor,
    encode_tensor,
    load_pruned,
    save_pruned,
    state_sha256,
)
from atvprune.engine import SparsityPattern, prune_model
from atvprune.pruners import build_pruner


@pytest.fixture(scope="module")
def base_dir(tiny_llava, tmp_path_factory):
    model, processor, _ = tiny_llava
    path = tmp_path_factory.mktemp("base") / "tiny"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _pruned(base_dir, adapter, method, pool=None):
    model, _ = adapter.load(base_dir)
    samples = capture(model, adapter, pool) if pool is not None else []
    pruner = build_pruner({"method": method}, adapter=adapter)
    prune_model(model, adapter, samples, pruner, SparsityPattern.parse("0.5"), False)
    return model


def _save(model, base_dir, adapter, out):
    base, _ = adapter.load(base_dir)
    return save_pruned(model, base, base_dir, out, "float32", "llava", {"x.json": "{}"})


def _bits_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k].view(torch.uint8), sb[k].view(torch.uint8)) for k in sa
    )


def test_mask_only_method_is_stored_as_packed_masks(tiny_llava, base_dir, tmp_path):
    _, _, adapter = tiny_llava
    model = _pruned(base_dir, adapter, "magnitude")
    manifest = _save(model, base_dir, adapter, tmp_path / "ckpt")
    assert set(manifest["tensors"].values()) == {"mask"}
    assert all(".layers." in name for name in manifest["tensors"])
    # One bit per decoder-Linear weight (~1/32 of their float32 bytes) plus headers.
    assert manifest["bytes"]["stored"] < manifest["bytes"]["dense"] / 20
    assert (tmp_path / "ckpt" / "x.json").read_text() == "{}"
    rebuilt, processor, sha = load_pruned(tmp_path / "ckpt", adapter)
    assert _bits_equal(rebuilt, model)
    assert sha == state_sha256(model) == manifest["state_sha256"]
    assert processor.tokenizer is not None


def test_sparsegpt_keeps_its_updated_weights_exactly(
    tiny_llava, tiny_pool, base_dir, tmp_path
):
    _, _, adapter = tiny_llava
    model = _pruned(base_dir, adapter, "sparsegpt", pool=tiny_pool)
    manifest = _save(model, base_dir, adapter, tmp_path / "ckpt")
    assert "sparse" in manifest["tensors"].values()
    assert manifest["bytes"]["stored"] < manifest["bytes"]["dense"]
    rebuilt, _, _ = load_pruned(tmp_path / "ckpt", adapter)
    assert _bits_equal(rebuilt, model)


def test_encoding_keeps_negative_zero_and_falls_back_to_full():
    base = torch.randn(8, 8)
    pruned = base.clone()
    pruned[:4] = 0.0
    pruned[6, 6] = -0.0  # a changed entry that is not +0.0: not a pure mask
    kind, stored = encode_tensor(pruned, base, "w")
    assert kind == "sparse"
    back = decode_tensor(kind, base, stored, "w")
    assert torch.equal(back.view(torch.int32), pruned.view(torch.int32))
    dense_change = base + 1.0  # nothing zero: sparse would be larger than full
    kind, stored = encode_tensor(dense_change, base, "w")
    assert kind == "full"
    assert torch.equal(decode_tensor(kind, base, stored, "w"), dense_change)
    assert encode_tensor(base.clone(), base, "w") == ("same", {})


def test_corrupt_delta_file_is_named(tiny_llava, base_dir, tmp_path):
    _, _, adapter = tiny_llava
    ckpt = tmp_path / "run_s0.5"
    _save(_pruned(base_dir, adapter, "magnitude"), base_dir, adapter, ckpt)
    data = bytearray((ckpt / DELTA).read_bytes())
    data[-1] ^= 0xFF
    (ckpt / DELTA).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"run_s0\.5: delta\.safetensors has"):
        load_pruned(ckpt, adapter)


def test_wrong_base_model_is_named(tiny_llava, base_dir, tmp_path):
    _, _, adapter = tiny_llava
    ckpt = tmp_path / "ckpt"
    _save(_pruned(base_dir, adapter, "magnitude"), base_dir, adapter, ckpt)
    other = tmp_path / "other_base"
    model, processor = adapter.load(base_dir)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(other)
    processor.save_pretrained(other)
    with pytest.raises(CheckpointError, match="base model .*other_base has sha256"):
        load_pruned(ckpt, adapter, base_dir=other)


def test_state_hash_mismatch_is_named(tiny_llava, base_dir, tmp_path):
    _, _, adapter = tiny_llava
    ckpt = tmp_path / "ckpt"
    _save(_pruned(base_dir, adapter, "magnitude"), base_dir, adapter, ckpt)
    manifest = json.loads((ckpt / MANIFEST).read_text())
    manifest["state_sha256"] = "0" * 64
    (ckpt / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt}: rebuilt model"):
        load_pruned(ckpt, adapter)


def test_missing_base_model_says_how_to_restore(tiny_llava, base_dir, tmp_path):
    _, _, adapter = tiny_llava
    ckpt = tmp_path / "ckpt"
    _save(_pruned(base_dir, adapter, "magnitude"), base_dir, adapter, ckpt)
    with pytest.raises(CheckpointError, match="dvc pull"):
        load_pruned(ckpt, adapter, base_dir=tmp_path / "gone")


def test_killed_writer_debris_is_cleared_and_old_output_kept(
    tiny_llava, base_dir, tmp_path
):
    """A stale `.name.*.tmp` sibling from a killed job is removed; a save that fails
    midway leaves the previous finished checkpoint untouched."""
    _, _, adapter = tiny_llava
    ckpt = tmp_path / "ckpt"
    model = _pruned(base_dir, adapter, "magnitude")
    _save(model, base_dir, adapter, ckpt)
    before = (ckpt / MANIFEST).read_bytes()
    stale = tmp_path / ".ckpt.abc123.tmp"
    stale.mkdir()
    (stale / DELTA).write_bytes(b"half")
    broken = copy.deepcopy(model)
    broken.extra = torch.nn.Linear(2, 2)  # a tensor the base lacks: save must fail
    with pytest.raises(
        CheckpointError, match=r"extra\.(bias|weight)' is not in base model"
    ):
        _save(broken, base_dir, adapter, ckpt)
    assert (ckpt / MANIFEST).read_bytes() == before
    _save(model, base_dir, adapter, ckpt)
    assert not stale.exists()
    assert not list(tmp_path.glob(".ckpt.*.tmp"))
