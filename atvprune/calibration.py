"""Calibration pool: sample selection and formatting into per-sample model inputs.

The paper draws 128 ShareGPT4V conversations with
`np.random.choice(range(start, end), 128, replace=False)` under a fixed global numpy
seed; `select_indices` reproduces that draw with a seeded `RandomState` (same stream as
`np.random.seed(seed)`). Each selected conversation is rendered whole (all turns) with
the model's chat template, batch 1, no padding, and stored with its image-token mask so
that every method prunes from exactly the same tensors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from atvprune.io import atomic_dir, sha256_file
from atvprune.models.base import CapturedSample, ModelAdapter

IMAGE_PLACEHOLDER = "<image>"


def select_indices(n_rows: int, n_samples: int, seed: int) -> list[int]:
    """The paper's random draw of `n_samples` distinct rows out of `n_rows`."""
    if n_samples > n_rows:
        raise ValueError(
            f"calibration pool has {n_rows} conversations "
            f"but {n_samples} were asked for"
        )
    return [
        int(i)
        for i in np.random.RandomState(seed).choice(n_rows, n_samples, replace=False)
    ]


def conversation_turns(record: dict) -> list[tuple[str, str]]:
    """LLaVA-NeXT-Data `conversations` -> (role, text) turns, `<image>` tag removed."""
    roles = {"human": "user", "gpt": "assistant"}
    turns = []
    for k, turn in enumerate(record.get("conversations") or []):
        if turn.get("from") not in roles:
            raise ValueError(
                f"calibration record {record.get('id')!r} turn {k}: unknown speaker "
                f"{turn.get('from')!r} (expected 'human' or 'gpt')"
            )
        text = (
            turn["value"]
            .replace(IMAGE_PLACEHOLDER + "\n", "")
            .replace(IMAGE_PLACEHOLDER, "")
        )
        turns.append((roles[turn["from"]], text.strip()))
    if not turns or turns[0][0] != "user":
        raise ValueError(
            f"calibration record {record.get('id')!r} must start with a human turn"
        )
    return turns


def build_pool(
    records: Sequence[dict], processor, adapter: ModelAdapter, model_config
) -> list[dict]:
    """Render each record into input_ids, pixel_values and its image-token mask."""
    pool = []
    for record in records:
        image = record.get("image")
        if not isinstance(image, Image.Image):
            raise ValueError(
                f"calibration record {record.get('id')!r} has no readable image"
            )
        text = adapter.chat_text(
            processor, conversation_turns(record), generation=False
        )
        inputs = adapter.encode(processor, image.convert("RGB"), text)
        mask = adapter.image_mask_from_ids(model_config, inputs["input_ids"][0])
        if not mask.any():
            raise ValueError(
                f"calibration record {record.get('id')!r}: no image tokens"
            )
        # The adapter decides which processor outputs the forward needs (LLaVA:
        # input_ids + pixel_values; LLaVA-NeXT adds image_sizes; Qwen: flattened
        # patches + image_grid_thw).
        pool.append(
            {
                "id": str(record.get("id")),
                **adapter.pool_tensors(inputs),
                "image_mask": mask,
            }
        )
    return pool


def save_pool(pool: list[dict], out_dir: Path, manifest: dict) -> None:
    """`pool.safetensors` (per-sample tensors) + `manifest.json`, written atomically."""
    with atomic_dir(Path(out_dir)) as tmp:
        tensors = {}
        for i, sample in enumerate(pool):
            for key, value in sample.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{i}.{key}"] = value.contiguous()
        save_file(tensors, str(tmp / "pool.safetensors"))
        samples = [
            {
                "id": s["id"],
                "n_tokens": int(s["input_ids"].numel()),
                "n_image_tokens": int(s["image_mask"].sum()),
                "n_text_tokens": int((~s["image_mask"]).sum()),
            }
            for s in pool
        ]
        manifest = {
            **manifest,
            "n_samples": len(pool),
            "samples": samples,
            "pool_sha256": sha256_file(tmp / "pool.safetensors"),
        }
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )


def load_pool(pool_dir: Path, expected: int | None = None) -> list[dict]:
    """Read a pool written by `save_pool`; `expected` checks the sample count."""
    pool_dir = Path(pool_dir)
    manifest = json.loads((pool_dir / "manifest.json").read_text())
    tensors = load_file(str(pool_dir / "pool.safetensors"))
    n = manifest["n_samples"]
    if expected is not None and n < expected:
        raise ValueError(
            f"calibration pool {pool_dir} has {n} samples, {expected} were asked for"
        )
    samples = [{"id": manifest["samples"][i]["id"]} for i in range(n)]
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        samples[int(index)][name] = value
    return samples


def capture(model, adapter: ModelAdapter, pool: list[dict]) -> list[CapturedSample]:
    """Layer-0 inputs of every pool sample (full multimodal forward up to layer 0)."""
    captured = []
    parameter = next(model.parameters())
    for sample in pool:
        inputs = adapter.forward_inputs(sample, parameter.device, parameter.dtype)
        captured.append(adapter.capture_layer_inputs(model, inputs))
    return captured
