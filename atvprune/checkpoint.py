"""Pruned checkpoints stored as what changed against the (DVC-tracked) base model.

A mask-only method (magnitude, Wanda, TAMP, ATV and its ablation policies) only zeroes
weights, so its checkpoint is one packed bit mask per pruned tensor (`np.packbits`,
1 bit per weight) plus a reference to the base model (path + sha256). A method that
also updates the weights it keeps (SparseGPT) stores, per changed tensor, the packed
bit mask of its non-zero entries and those values only (a compressed sparse tensor,
or the full tensor when that is smaller). Tensors equal to the base are not stored.

Which encoding a tensor gets is decided from the tensors themselves (bit for bit), not
from the method's name, so a method that changes weights can never be stored as a mask.
The loader rebuilds the pruned model on top of the base and checks, in order: the
stored files against their sha256 in `checkpoint.json`, the base model against the
sha256 it was pruned from, and the rebuilt model's state hash against the pruned
model's. Any mismatch is an error naming the checkpoint and the file.

Layout of a checkpoint directory::

    checkpoint.json      format, base model (path, sha256), dtype, per-tensor encoding,
                         sha256 of every stored file, state_sha256, byte counts
    delta.safetensors    "<tensor>.mask" (uint8, packed) for mask-only tensors;
                         "<tensor>.nonzero" (uint8, packed) + "<tensor>.values" for
                         sparse ones; "<tensor>.full" for tensors stored whole
    prune_stats.json, provenance.json   written by the prune rule beside them
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from atvprune.io import atomic_dir, dumps, sha256_dir, sha256_file

FORMAT = "atvprune-delta/1"
MANIFEST = "checkpoint.json"
DELTA = "delta.safetensors"
# Same-width integer views: comparing bits (not float values) keeps -0.0 and NaN
# payloads exact and makes "unchanged" mean byte-identical.
_INT_VIEW = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be rebuilt exactly (missing, corrupt or mismatched)."""


def state_sha256(model: torch.nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, raw bytes), sorted."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    view = _INT_VIEW.get(tensor.dtype)
    return tensor.view(view) if view is not None else tensor


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.cpu().numpy().reshape(-1)))


def _unpack(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    bits = np.unpackbits(packed.numpy(), count=numel)
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


def encode_tensor(
    pruned: torch.Tensor, base: torch.Tensor, name: str
) -> tuple[str, dict[str, torch.Tensor]]:
    """How to store `pruned` given `base`: ("same"|"mask"|"sparse"|"full", tensors)."""
    if pruned.shape != base.shape or pruned.dtype != base.dtype:
        raise CheckpointError(
            f"tensor {name!r}: pruned {pruned.dtype}{tuple(pruned.shape)} vs base "
            f"{base.dtype}{tuple(base.shape)}; pruning must keep shapes and dtypes"
        )
    pruned, base = pruned.detach().cpu(), base.detach().cpu()
    changed = _bits(pruned) != _bits(base)
    if not changed.any():
        return "same", {}
    if pruned.is_floating_point() and not _bits(pruned)[changed].any():
        # Every changed entry is now +0.0: a pure mask over the base.
        return "mask", {f"{name}.mask": _pack(changed)}
    nonzero = _bits(pruned) != 0
    values = pruned[nonzero].contiguous()
    sparse_bytes = values.numel() * values.element_size() + (nonzero.numel() + 7) // 8
    if sparse_bytes < pruned.numel() * pruned.element_size():
        return "sparse", {f"{name}.nonzero": _pack(nonzero), f"{name}.values": values}
    return "full", {f"{name}.full": pruned.contiguous()}


def decode_tensor(
    kind: str, base: torch.Tensor, stored: Mapping[str, torch.Tensor], name: str
) -> torch.Tensor:
    """Inverse of :func:`encode_tensor`."""
    shape = tuple(base.shape)
    if kind == "mask":
        rebuilt = base.detach().clone()
        rebuilt[_unpack(stored[f"{name}.mask"], shape)] = 0
        return rebuilt
    if kind == "sparse":
        rebuilt = torch.zeros_like(base)
        rebuilt[_unpack(stored[f"{name}.nonzero"], shape)] = stored[f"{name}.values"]
        return rebuilt
    if kind == "full":
        return stored[f"{name}.full"]
    raise CheckpointError(f"tensor {name!r}: unknown encoding {kind!r}")


def _dense_bytes(base_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(base_dir).glob("*.safetensors"))


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete `.<name>.*.tmp` siblings left by a killed writer of `out_dir` (they
    would otherwise be hashed into the DVC-tracked parent directory)."""
    out_dir = Path(out_dir)
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def save_pruned(
    model: torch.nn.Module,
    base_model: torch.nn.Module,
    base_dir: str | Path,
    out_dir: str | Path,
    dtype: str,
    family: str,
    records: Mapping[str, str] | None = None,
) -> dict:
    """Write `model` as a delta over `base_model` (loaded from `base_dir`) into
    `out_dir`, atomically, with `records` ({file name: text}) beside it.

    The encoding is verified before anything is renamed into place: every tensor is
    decoded again and compared bit for bit. Returns the manifest."""
    out_dir = Path(out_dir)
    base_state = base_model.state_dict()
    encodings: dict[str, str] = {}
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in sorted(model.state_dict().items()):
        if name not in base_state:
            raise CheckpointError(f"tensor {name!r} is not in base model {base_dir}")
        kind, tensors = encode_tensor(tensor, base_state[name], name)
        if kind == "same":
            continue
        rebuilt = decode_tensor(kind, base_state[name], tensors, name)
        if not torch.equal(_bits(rebuilt), _bits(tensor.detach().cpu())):
            raise CheckpointError(f"tensor {name!r}: {kind} encoding is not exact")
        encodings[name] = kind
        stored.update(tensors)
    remove_stale_temporaries(out_dir)
    with atomic_dir(out_dir) as tmp:
        # safetensors refuses an empty dict; a no-op prune still gets a (tiny) file.
        save_file(stored or {"_empty": torch.zeros(0)}, str(tmp / DELTA))
        manifest = {
            "format": FORMAT,
            "family": family,
            "dtype": dtype,
            "base_model": str(base_dir),
            "base_model_sha256": sha256_dir(Path(base_dir)),
            "tensors": encodings,
            "files": {DELTA: sha256_file(tmp / DELTA)},
            "state_sha256": state_sha256(model),
            "bytes": {
                "stored": (tmp / DELTA).stat().st_size,
                "dense": _dense_bytes(Path(base_dir)),
            },
        }
        (tmp / MANIFEST).write_text(dumps(manifest))
        for file_name, text in (records or {}).items():
            (tmp / file_name).write_text(text)
    return manifest


def read_manifest(checkpoint: str | Path) -> dict:
    """checkpoint.json of a delta checkpoint, with its required keys checked."""
    path = Path(checkpoint) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {checkpoint}: no {MANIFEST}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    for key in ("format", "base_model", "base_model_sha256", "tensors", "files"):
        if key not in manifest:
            raise CheckpointError(f"{path}: missing required key {key!r}")
    if manifest["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: format {manifest['format']!r}, this code reads {FORMAT!r}"
        )
    return manifest


def verify_files(checkpoint: str | Path, manifest: dict | None = None) -> dict:
    """Check every stored file against the sha256 recorded in checkpoint.json."""
    checkpoint = Path(checkpoint)
    manifest = manifest or read_manifest(checkpoint)
    for file_name, expected in sorted(manifest["files"].items()):
        path = checkpoint / file_name
        if not path.exists():
            raise CheckpointError(f"checkpoint {checkpoint}: {file_name} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {checkpoint}: {file_name} has sha256 {actual}, but "
                f"{MANIFEST} records {expected}; the file is corrupt or was replaced "
                f"(restore it with `dvc pull` or re-run its prune job)"
            )
    return manifest


def is_delta_checkpoint(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).exists()


def load_pruned(
    checkpoint: str | Path,
    adapter,
    dtype: str = "float32",
    base_dir: str | Path | None = None,
):
    """(model, processor, state_sha256) of a checkpoint directory.

    A delta checkpoint is rebuilt over its base model (`base_dir` overrides the
    recorded path); any other directory (the dense base model, an older full
    checkpoint) is loaded as a `save_pretrained` directory."""
    checkpoint = Path(checkpoint)
    if not is_delta_checkpoint(checkpoint):
        model, processor = adapter.load(checkpoint, dtype)
        return model, processor, state_sha256(model)
    manifest = verify_files(checkpoint)
    base = Path(base_dir or manifest["base_model"])
    if not base.exists():
        raise CheckpointError(
            f"checkpoint {checkpoint}: its base model {base} does not exist "
            f"(`dvc pull {base}.dvc` restores it)"
        )
    base_sha = sha256_dir(base)
    if base_sha != manifest["base_model_sha256"]:
        raise CheckpointError(
            f"checkpoint {checkpoint}: base model {base} has sha256 {base_sha}, but "
            f"the checkpoint was pruned from {manifest['base_model_sha256']}"
        )
    model, processor = adapter.load(base, manifest.get("dtype", dtype))
    stored = load_file(str(checkpoint / DELTA))
    state = model.state_dict()
    with torch.no_grad():
        for name, kind in sorted(manifest["tensors"].items()):
            if name not in state:
                raise CheckpointError(
                    f"checkpoint {checkpoint}: tensor {name!r} not in base model {base}"
                )
            state[name].copy_(decode_tensor(kind, state[name], stored, name))
    actual = state_sha256(model)
    expected = manifest.get("state_sha256")
    if expected is not None and actual != expected:
        raise CheckpointError(
            f"checkpoint {checkpoint}: rebuilt model has state sha256 {actual}, but "
            f"{MANIFEST} records {expected}"
        )
    return model, processor, actual
