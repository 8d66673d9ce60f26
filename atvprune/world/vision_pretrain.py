"""Stage 0 of the tiny model: pre-train its CLIP vision tower on the mini world.

Real LLaVA models start from a pre-trained CLIP encoder and keep it frozen. A random
CLIP tower gives the decoder colour (a linear function of the pixels) but not shape, and
a ~1 M-parameter LLaVA trained end to end from random weights does not learn to see
shapes in minutes (measured: chance-level shape naming after 300 steps, frozen or not).
So, like CLIP pre-training but supervised and tiny, every patch token learns to predict
what covers its grid cell: the shape (or none), the colour, and the digit of a sign. The
heads are thrown away afterwards; only the tower's weights remain, and instruction
tuning then keeps the tower frozen, as LLaVA does.

The scenes come from the *training* pool of the world's generator (fresh draws from the
same seeded stream family), so no evaluation or calibration image is ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from atvprune.world.scenes import (
    CELLS,
    COLOURS,
    SHAPES,
    Scene,
    cell_row_col,
    render,
    sample_scene_from_pool,
)


@dataclass(frozen=True)
class VisionPretrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    n_scenes: int
    seed: int


def cell_targets(scene: Scene) -> torch.Tensor:
    """(9, 3) long: per cell (row-major) shape id, colour id, digit id; 0 = nothing.

    shape: 0 none, 1..6 SHAPES, 7 sign; colour: 0 none, 1..5 COLOURS, 6 white (sign);
    digit: 0 none, 1..10 the digits 0..9.
    """
    targets = torch.zeros((len(CELLS), 3), dtype=torch.long)
    for shape, colour, cell in scene.objects:
        row, col = cell_row_col(cell)
        targets[row * 3 + col] = torch.tensor(
            [SHAPES.index(shape) + 1, COLOURS.index(colour) + 1, 0]
        )
    if scene.digit is not None:
        value, cell = scene.digit
        row, col = cell_row_col(cell)
        targets[row * 3 + col] = torch.tensor(
            [len(SHAPES) + 1, len(COLOURS) + 1, value + 1]
        )
    return targets


def patch_cells(image_size: int, patch_size: int) -> torch.Tensor:
    """For each patch token (row-major), the index of the grid cell it lies in."""
    per_side = image_size // patch_size
    cell_px = image_size // 3
    centres = (torch.arange(per_side) * patch_size + patch_size // 2) // cell_px
    return (centres[:, None] * 3 + centres[None, :]).reshape(-1)


class _CellHeads(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.shape = torch.nn.Linear(hidden, len(SHAPES) + 2)
        self.colour = torch.nn.Linear(hidden, len(COLOURS) + 2)
        self.digit = torch.nn.Linear(hidden, 11)

    def forward(self, features):
        return self.shape(features), self.colour(features), self.digit(features)


def pretrain_vision(
    model,
    processor,
    settings: VisionPretrainSettings,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train `model`'s vision tower in place on per-patch cell labels; returns the
    curve.
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng([settings.seed, 7, 7])
    scenes = [sample_scene_from_pool(rng, "train") for _ in range(settings.n_scenes)]
    pixels = processor.image_processor(
        [render(s) for s in scenes], return_tensors="pt"
    )["pixel_values"]
    targets = torch.stack([cell_targets(s) for s in scenes])  # (N, 9, 3)
    tower = model.model.vision_tower
    config = model.config.vision_config
    cells = patch_cells(config.image_size, config.patch_size)
    patch_targets = targets[:, cells]  # (N, P, 3)
    heads = _CellHeads(config.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    layer = model.config.vision_feature_layer
    tower.train()
    curve = []
    started = time.perf_counter()
    for step in tqdm(
        range(settings.steps), desc="vision pretrain", unit="step", mininterval=5
    ):
        index = torch.randint(
            0, len(scenes), (settings.batch_size,), generator=generator
        )
        hidden = tower(pixels[index], output_hidden_states=True).hidden_states[layer][
            :, 1:
        ]
        logits = heads(hidden)
        goal = patch_targets[index]
        loss = sum(
            torch.nn.functional.cross_entropy(
                lg.reshape(-1, lg.shape[-1]), goal[..., k].reshape(-1)
            )
            for k, lg in enumerate(logits)
        )
        lr = settings.learning_rate * min(1.0, (step + 1) / 20)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == settings.steps - 1:
            with torch.no_grad():
                shape_acc = (logits[0].argmax(-1) == goal[..., 0]).float().mean().item()
            curve.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 5),
                    "shape_acc": round(shape_acc, 4),
                    "elapsed_s": round(time.perf_counter() - started, 2),
                }
            )
    tower.eval()
    log(f"vision pre-training: {settings.steps} steps, final {curve[-1]}")
    return curve
