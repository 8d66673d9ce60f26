"""Everything that talks to the Hugging Face hub (paper profile only): model snapshots,
the ShareGPT4V calibration source, and the benchmark datasets.

Each download is pinned to a commit hash from the config and refuses to start without
one. When the hub cannot be reached (no network, `HF_HUB_OFFLINE=1`, gated repo, wrong
revision) the error names the model or dataset, the config key, and the two ways to
run without network: point `local_path` at a local copy, or fill the HF cache
elsewhere and run with `HF_HUB_OFFLINE=1`.

The calibration draw reproduces the official code (methods.md 6, 7.7): the annotation
file `llava_next_raw_format_processed.json` is split into tasks by the first component
of each row's image path (TAMP's `split_finetune_llava_next.py`, including its
off-by-one that drops the last row of the last task), and 128 rows of the `sharegpt4v`
range are drawn with `np.random.choice(range(start, end), 128, replace=False)` under the
model's seed. The stored source keeps *every* row of that range in order, with images
only for the rows some configured seed selects, so the calibration_pool rule's
`select_indices(end - start, n, seed)` picks exactly the paper's rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from atvprune.calibration import select_indices
from atvprune.io import atomic_dir, dumps

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Weight formats transformers' PyTorch classes never read; some repos ship them too.
IGNORED_MODEL_FILES = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.gguf", "original/*"]
IMAGE_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class HubError(RuntimeError):
    """A hub download failed; the message says what to set to run without network."""


def require_revision(key: str, revision) -> str:
    """The pinned commit of config key `key`, or a ValueError saying how to pin it."""
    if not isinstance(revision, str) or not COMMIT_RE.match(revision):
        raise ValueError(
            f"config {key} = {revision!r} is not a pinned commit hash (40 hex "
            f"characters). Set it to the commit you want to reproduce, e.g. the "
            f"current one printed by `python -m atvprune.hub pins config/paper.yaml` "
            f"on a machine with hub access, or set the matching `local_path` to a "
            f"local copy (see docs/paper_profile.md)."
        )
    return revision


def hub_failure(
    what: str, repo: str, revision: str, local_key: str, error: Exception
) -> HubError:
    """A HubError naming the artefact, the failure and the offline alternatives."""
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = (
        "HF_HUB_OFFLINE is set, so only the local HF cache was searched and it does "
        "not hold this revision. "
        if offline
        else ""
    )
    return HubError(
        f"could not download {what} ({repo} @ {revision}) from the Hugging Face hub: "
        f"{type(error).__name__}: {error}\n{hint}To run without network: download it "
        f"on a machine with access (e.g. `huggingface-cli download {repo} --revision "
        f"{revision}`, or this same rule) and either set `{local_key}` in the config "
        f"to a local copy, or copy the HF cache (HF_HOME) here and run with "
        f"HF_HUB_OFFLINE=1. For gated repos run `huggingface-cli login` or set "
        f"HF_TOKEN."
    )


# ---------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------


def download_model(name: str, spec: dict, out_dir: Path) -> dict:
    """Snapshot `models.<name>` at its pinned revision (or copy `local_path`) into
    `out_dir`, atomically; returns the provenance also written to download.json."""
    out_dir = Path(out_dir)
    local = spec.get("local_path")
    with atomic_dir(out_dir) as tmp:
        if local:
            source = Path(local)
            if not (source / "config.json").exists():
                raise FileNotFoundError(
                    f"config models.{name}.local_path = {local!r} is not a model "
                    f"directory (no config.json)"
                )
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            provenance = {"model": name, "local_path": str(source)}
        else:
            repo = spec["hf_id"]
            revision = require_revision(f"models.{name}.revision", spec.get("revision"))
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(
                    repo_id=repo,
                    revision=revision,
                    local_dir=tmp,
                    ignore_patterns=IGNORED_MODEL_FILES,
                )
            except Exception as error:  # hub errors come in many types
                raise hub_failure(
                    f"model {name!r}",
                    repo,
                    revision,
                    f"models.{name}.local_path",
                    error,
                ) from error
            provenance = {"model": name, "hf_id": repo, "revision": revision}
        # huggingface_hub's download metadata is not part of the model (and DVC
        # would hash it).
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        provenance["files"] = sorted(
            str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()
        )
        (tmp / "download.json").write_text(dumps(provenance))
    return provenance


# ---------------------------------------------------------------------------------
# Calibration source
# ---------------------------------------------------------------------------------


def task_ranges(records: Sequence[dict]) -> dict[str, tuple[int, int]]:
    """Task -> [start, end) as TAMP's split script computes it: a task starts at the
    first row whose image path begins with it and ends where the next new task
    starts; the last task ends at len - 1 (its last row is dropped)."""
    starts: dict[str, int] = {}
    for index, record in enumerate(records):
        if "image" not in record:
            raise ValueError(
                f"calibration annotations row {index} ({record.get('id')!r}) has no "
                f"image path"
            )
        starts.setdefault(str(record["image"]).split("/")[0], index)
    names = list(starts)
    ranges = {}
    for k, name in enumerate(names):
        end = starts[names[k + 1]] if k + 1 < len(names) else len(records) - 1
        ranges[name] = (starts[name], end)
    return ranges


def selected_rows(n_rows: int, n_samples: int, seeds: Iterable[int]) -> set[int]:
    """Rows (relative to the task range) some seed's paper draw selects."""
    return {i for seed in seeds for i in select_indices(n_rows, n_samples, seed)}


def images_from_archives(
    archives: Iterable[Path], wanted: set[str]
) -> dict[str, bytes]:
    """Bytes of the wanted image paths found in tar archives (a member matches when
    its name is the path or ends with "/" + path); stops once all are found."""
    found: dict[str, bytes] = {}
    for archive in archives:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                match = _match(name, wanted)
                if match is not None and match not in found:
                    found[match] = tar.extractfile(member).read()
                    if len(found) == len(wanted):
                        return found
    return found


def _match(name: str, wanted: set[str]) -> str | None:
    if name in wanted:
        return name
    parts = name.split("/")
    for k in range(1, len(parts)):
        tail = "/".join(parts[k:])
        if tail in wanted:
            return tail
    return None


def build_calibration_source(
    records: Sequence[dict],
    fetch_images: Callable[[set[str]], dict[str, bytes]],
    out_dir: Path,
    pool: str,
    task: str,
    n_samples: int,
    seeds: Sequence[int],
    provenance: dict,
) -> dict:
    """Write `out_dir/<pool>` (a DatasetDict with split "calib": every row of the
    task's range in order, images for the selected rows only) and manifest.json."""
    import datasets

    ranges = task_ranges(records)
    if task not in ranges:
        raise KeyError(
            f"calibration task {task!r} is not in the annotations; tasks found: "
            f"{sorted(ranges)}"
        )
    start, end = ranges[task]
    rows = records[start:end]
    chosen = selected_rows(len(rows), n_samples, seeds)
    wanted = {str(rows[i]["image"]) for i in chosen}
    images = fetch_images(wanted)
    missing = sorted(wanted - set(images))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} calibration image(s) not found in the image archives, "
            f"e.g. {missing[:3]}"
        )
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image_path": datasets.Value("string"),
            "image": datasets.Image(),
            "conversations": [
                {"from": datasets.Value("string"), "value": datasets.Value("string")}
            ],
        }
    )
    table = {
        "id": [str(r.get("id", start + i)) for i, r in enumerate(rows)],
        "image_path": [str(r["image"]) for r in rows],
        "image": [
            {"bytes": images[str(r["image"])], "path": None} if i in chosen else None
            for i, r in enumerate(rows)
        ],
        "conversations": [
            [{"from": t["from"], "value": t["value"]} for t in r["conversations"]]
            for r in rows
        ],
    }
    dataset = datasets.Dataset.from_dict(table, features=features)
    manifest = {
        **provenance,
        "task": task,
        "task_range": [start, end],
        "n_rows": len(rows),
        "n_samples": n_samples,
        "selected_rows": {
            str(seed): [start + i for i in select_indices(len(rows), n_samples, seed)]
            for seed in seeds
        },
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        datasets.DatasetDict({"calib": dataset}).save_to_disk(str(tmp / pool))
        (tmp / "manifest.json").write_text(dumps(manifest))
    return manifest


def download_calibration(
    calibration: dict, out_dir: Path, seeds: Sequence[int]
) -> dict:
    """The calibration source of config `calibration` (its `source` section) from the
    hub at the pinned revision, or from `source.local_path` (a directory holding the
    annotation JSON and the image archives under the same relative paths)."""
    source = calibration.get("source") or {}
    for key in ("dataset", "annotations", "task"):
        if key not in source:
            raise KeyError(f"config calibration.source.{key} is required")
    repo, annotations = source["dataset"], source["annotations"]
    folder = str(Path(annotations).parent)
    if source.get("local_path"):
        root = Path(source["local_path"])
        if not (root / annotations).exists():
            raise FileNotFoundError(
                f"config calibration.source.local_path = {str(root)!r} has no "
                f"{annotations}"
            )
        annotation_file = root / annotations
        archives = sorted(
            p
            for p in (root / folder).iterdir()
            if p.name.endswith(IMAGE_ARCHIVE_SUFFIXES)
        )
        fetch = lambda wanted: images_from_archives(archives, wanted)  # noqa: E731
        provenance = {"dataset": repo, "local_path": str(root)}
    else:
        revision = require_revision(
            "calibration.source.revision", source.get("revision")
        )
        annotation_file, fetch = _hub_calibration(repo, revision, annotations, folder)
        provenance = {"dataset": repo, "revision": revision}
    records = json.loads(Path(annotation_file).read_text())
    return build_calibration_source(
        records,
        fetch,
        Path(out_dir),
        calibration["pool"],
        source["task"],
        calibration["n_samples"],
        list(seeds),
        {**provenance, "annotations": annotations},
    )


def _hub_calibration(repo: str, revision: str, annotations: str, folder: str):
    from huggingface_hub import HfApi, hf_hub_download

    local_key = "calibration.source.local_path"

    def get(filename: str) -> Path:
        try:
            return Path(
                hf_hub_download(repo, filename, repo_type="dataset", revision=revision)
            )
        except Exception as error:
            raise hub_failure(
                f"calibration file {filename}", repo, revision, local_key, error
            ) from error

    annotation_file = get(annotations)

    def fetch(wanted: set[str]) -> dict[str, bytes]:
        try:
            files = HfApi().list_repo_files(
                repo, repo_type="dataset", revision=revision
            )
        except Exception as error:
            raise hub_failure(
                "the calibration image archives", repo, revision, local_key, error
            ) from error
        names = sorted(
            f
            for f in files
            if f.startswith(folder + "/") and f.endswith(IMAGE_ARCHIVE_SUFFIXES)
        )
        # Archives are fetched one at a time and only until every image is found.
        found: dict[str, bytes] = {}
        for name in names:
            found.update(images_from_archives([get(name)], wanted - set(found)))
            if len(found) == len(wanted):
                break
        return found

    return annotation_file, fetch


# ---------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------


def download_benchmark(name: str, source: dict, out_dir: Path) -> dict:
    """The evaluated split of benchmark `name` at its pinned revision, saved in the
    layout `atvprune.evaluate.load_local_split` reads (GQA: questions and images)."""
    import datasets

    from atvprune.benchmarks import get_benchmark

    bench = get_benchmark(name)
    task = bench.TASK
    repo = source.get("dataset", task.dataset_path)
    revision = require_revision(f"benchmarks.{name}.revision", source.get("revision"))
    configs = [(task.dataset_name, "")]
    if name == "gqa":
        configs = [
            (task.dataset_name, task.dataset_name),
            (bench.IMAGES_DATASET_NAME, bench.IMAGES_DATASET_NAME),
        ]
    counts = {}
    with atomic_dir(Path(out_dir)) as tmp:
        for config_name, subdir in configs:
            try:
                split = datasets.load_dataset(
                    repo, config_name, split=task.split, revision=revision
                )
            except Exception as error:
                raise hub_failure(
                    f"benchmark {name!r} (config {config_name})",
                    repo,
                    revision,
                    f"benchmarks.{name}.local_path",
                    error,
                ) from error
            datasets.DatasetDict({task.split: split}).save_to_disk(str(tmp / subdir))
            counts[config_name or "default"] = len(split)
        provenance = {
            "benchmark": name,
            "dataset": repo,
            "revision": revision,
            "split": task.split,
            "rows": counts,
        }
        (tmp / "download.json").write_text(dumps(provenance))
    return provenance


# ---------------------------------------------------------------------------------
# Pinning helper
# ---------------------------------------------------------------------------------


def current_pins(config: dict) -> dict[str, str]:
    """Config key -> the current head commit of every hub repo the config names
    (needs hub access); paste the values into the config to pin them."""
    from huggingface_hub import HfApi

    from atvprune.benchmarks import get_benchmark

    api = HfApi()
    pins = {}
    for name, spec in config["models"].items():
        if spec.get("source") == "hub":
            pins[f"models.{name}.revision"] = api.model_info(spec["hf_id"]).sha
    source = config.get("calibration", {}).get("source")
    if source:
        pins["calibration.source.revision"] = api.dataset_info(source["dataset"]).sha
    for name, spec in config["benchmarks"].items():
        repo = spec.get("dataset", get_benchmark(name).TASK.dataset_path)
        pins[f"benchmarks.{name}.revision"] = api.dataset_info(repo).sha
    return pins


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m atvprune.hub pins CONFIG`: print the current commit of every repo."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["pins"])
    parser.add_argument("config")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    for key, sha in current_pins(config).items():
        print(f"{key}: {sha}")


if __name__ == "__main__":
    main()


__all__ = [
    "HubError",
    "build_calibration_source",
    "current_pins",
    "download_benchmark",
    "download_calibration",
    "download_model",
    "images_from_archives",
    "require_revision",
    "task_ranges",
]
