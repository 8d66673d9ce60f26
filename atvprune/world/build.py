"""Write the whole mini world to disk, deterministically.

Layout under ``out_dir`` (each a ``datasets.DatasetDict`` written by ``save_to_disk``):

- ``<task>/`` for the eight single-config tasks, with the split lmms-eval evaluates
  (``benchmarks.EVAL_SPLITS``) and a ``train`` split of the same schema;
- ``gqa/testdev_balanced_instructions/`` and ``gqa/testdev_balanced_images/``, each
  with ``testdev`` and ``train``;
- ``sharegpt4v/`` with ``train`` (training conversations) and ``calib`` (the
  calibration source);
- ``world.json``: seed, sizes and the fingerprint of every dataset directory.

Randomness: every (split role, stream) pair gets its own generator
``np.random.default_rng([seed, ROLE_IDS[role], STREAM_IDS[stream]])`` (fixed integer
ids, never Python's ``hash()``). Disjointness does not rely on luck: scenes are
partitioned into eval / calib / train pools by a stable hash of their caption
(``scenes.scene_pool``), and ``check_disjoint`` verifies it on the written image bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np

from atvprune.world import conversations
from atvprune.world.benchmarks import (
    EVAL_SPLITS,
    FEATURES,
    GQA_INSTRUCTIONS,
    IMAGE_COLUMNS,
    TASK_DATASETS,
    TASKS,
    TRAIN_SPLIT,
    Record,
    build_task,
)

CONVERSATIONS_DIR = "sharegpt4v"
CALIB_SPLIT = "calib"
MANIFEST = "world.json"

SIZE_KEYS: tuple[str, ...] = (
    "eval_items",
    "train_items",
    "train_conversations",
    "calib_conversations",
)
DEFAULT_SIZES: dict[str, int] = {
    "eval_items": 150,
    "train_items": 1500,
    "train_conversations": 3000,
    "calib_conversations": 200,
}

# Stable stream ids: never reorder or reuse a number (it would change every world).
ROLE_IDS: dict[str, int] = {"eval": 1, "train": 2, "calib": 3}
STREAM_IDS: dict[str, int] = {
    "ok_vqa_val2014": 1,
    "vizwiz_vqa_val": 2,
    "textvqa_val": 3,
    "gqa": 4,
    "pope": 5,
    "scienceqa_img": 6,
    "mmbench_en_dev": 7,
    "mme": 8,
    "mmmu_val": 9,
    CONVERSATIONS_DIR: 10,
}

# Files whose bytes define a saved dataset (state.json only repeats bookkeeping).
_FINGERPRINT_FILES = ("dataset_info.json", "dataset_dict.json")
_DATA_FILE_PREFIX = (
    "data-"  # save_to_disk shards; later cache-*.arrow files are not data
)


def stream_rng(seed: int, role: str, stream: str) -> np.random.Generator:
    """The generator of one (role, stream) pair: default_rng([seed, role, stream])."""
    if role not in ROLE_IDS:
        raise KeyError(f"unknown role {role!r}; expected one of {tuple(ROLE_IDS)}")
    if stream not in STREAM_IDS:
        raise KeyError(f"unknown stream {stream!r}; expected {tuple(STREAM_IDS)}")
    return np.random.default_rng([seed, ROLE_IDS[role], STREAM_IDS[stream]])


def check_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    """Fill defaults and validate: known keys, positive integers."""
    merged = dict(DEFAULT_SIZES)
    for key, value in (sizes or {}).items():
        if key not in DEFAULT_SIZES:
            raise KeyError(f"unknown size key {key!r}; expected one of {SIZE_KEYS}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"size {key!r} must be a positive int, got {value!r}")
        merged[key] = value
    return merged


def build_world(
    out_dir: str | Path, seed: int, sizes: Mapping[str, int] | None = None
) -> dict:
    """Generate every benchmark, the conversations and the manifest under ``out_dir``.

    ``out_dir`` must not exist or be empty. Returns the manifest (also written to
    ``out_dir/world.json``). Raises ValueError if any image is shared across the
    eval / calib / train roles.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    sizes = check_sizes(sizes)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"world output directory {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)

    with _quiet_progress_bars():
        for task in TASKS:
            eval_split = EVAL_SPLITS[task]
            eval_parts = build_task(
                task,
                stream_rng(seed, "eval", task),
                sizes["eval_items"],
                eval_split,
                "eval",
            )
            train_parts = build_task(
                task,
                stream_rng(seed, "train", task),
                sizes["train_items"],
                TRAIN_SPLIT,
                "train",
            )
            for name in TASK_DATASETS[task]:
                _save(
                    out / name,
                    FEATURES[name],
                    {eval_split: eval_parts[name], TRAIN_SPLIT: train_parts[name]},
                )
        _save(
            out / CONVERSATIONS_DIR,
            conversations.FEATURES,
            {
                TRAIN_SPLIT: conversations.conversation_records(
                    stream_rng(seed, "train", CONVERSATIONS_DIR),
                    sizes["train_conversations"],
                    TRAIN_SPLIT,
                    "train",
                ),
                CALIB_SPLIT: conversations.conversation_records(
                    stream_rng(seed, "calib", CONVERSATIONS_DIR),
                    sizes["calib_conversations"],
                    CALIB_SPLIT,
                    "calib",
                ),
            },
        )
    check_disjoint(out)
    manifest = {
        "seed": seed,
        "sizes": sizes,
        "datasets": {name: dataset_fingerprint(out / name) for name in dataset_dirs()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def dataset_dirs() -> list[str]:
    """Every dataset directory of a world, relative to its root."""
    names = [name for task in TASKS for name in TASK_DATASETS[task]]
    return [*names, CONVERSATIONS_DIR]


def _save(
    path: Path, features: datasets.Features, splits: Mapping[str, list[Record]]
) -> None:
    dataset_dict = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(records, features=features)
            for split, records in splits.items()
        }
    )
    dataset_dict.save_to_disk(str(path))


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Silence datasets' progress bars for the duration, then restore the setting."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# --- checks ---------------------------------------------------------------------


def _image_hashes(path: Path, split: str, column: str) -> set[str]:
    dataset = datasets.load_from_disk(str(path))[split]
    cells = dataset.cast_column(column, datasets.Image(decode=False))[column]
    return {hashlib.sha256(cell["bytes"]).hexdigest() for cell in cells if cell}


def world_image_hashes(out_dir: str | Path) -> dict[str, set[str]]:
    """sha256 of the stored image bytes, grouped by role: eval, calib, train."""
    out = Path(out_dir)
    roles: dict[str, set[str]] = {"eval": set(), "calib": set(), "train": set()}
    for task in TASKS:
        for name in TASK_DATASETS[task]:
            if name == GQA_INSTRUCTIONS:
                continue  # GQA's images live in the images config
            column = IMAGE_COLUMNS[name]
            roles["eval"] |= _image_hashes(out / name, EVAL_SPLITS[task], column)
            roles["train"] |= _image_hashes(out / name, TRAIN_SPLIT, column)
    roles["train"] |= _image_hashes(out / CONVERSATIONS_DIR, TRAIN_SPLIT, "image")
    roles["calib"] |= _image_hashes(out / CONVERSATIONS_DIR, CALIB_SPLIT, "image")
    return roles


def check_disjoint(out_dir: str | Path) -> dict[str, int]:
    """Raise ValueError if eval, calib and train share any image (by bytes).

    Returns the number of distinct images per role.
    """
    roles = world_image_hashes(out_dir)
    for a, b in (("eval", "train"), ("calib", "train"), ("calib", "eval")):
        shared = roles[a] & roles[b]
        if shared:
            raise ValueError(
                f"{len(shared)} image(s) shared between the {a} and {b} splits of "
                f"{out_dir} (e.g. sha256 {min(shared)})"
            )
    return {role: len(hashes) for role, hashes in roles.items()}


def dataset_fingerprint(path: str | Path) -> str:
    """sha256 over a saved dataset's data and schema files, in sorted path order.

    Hashes each ``data-*.arrow`` shard, ``dataset_info.json`` and
    ``dataset_dict.json`` under ``path`` (relative path, then bytes). Skipped:
    ``state.json`` (bookkeeping only) and ``cache-*.arrow`` files that a later
    ``.map()`` on the loaded dataset may leave behind. Equal fingerprints mean
    byte-identical data.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no saved dataset at {root}")

    def is_data(p: Path) -> bool:
        return p.suffix == ".arrow" and p.name.startswith(_DATA_FILE_PREFIX)

    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (is_data(p) or p.name in _FINGERPRINT_FILES)
    )
    if not any(is_data(p) for p in files):
        raise ValueError(f"{root} holds no .arrow data files")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()
