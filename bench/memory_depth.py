"""Pruning memory benchmark (not a test): extra peak memory beyond the model's own
weights when pruning a random-init LLaVA at two decoder depths, and checkpoint bytes
per method against the dense model.

The layer-wise engine keeps one decoder layer's activations for the calibration pool at
a time, so the extra memory should stay about constant as layers are added, while the
weights grow linearly. Each (depth, method) runs in a fresh process so its resident-set
baseline is clean; a sampler thread reads the resident set every 2 ms during
calibration capture + pruning. On a CUDA machine the same numbers come from the CUDA
allocator instead.

Checkpoints are written the way the prune rule writes them: a delta over the dense base
(atvprune.checkpoint.save_pruned) when that module exists, else `save_pretrained`.

Usage:
    python bench/memory_depth.py [--depths 2 8] [--methods wanda atv ...]
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atvprune.calibration import build_pool, capture
from atvprune.engine import SparsityPattern, prune_model
from atvprune.models import get_adapter
from atvprune.pruners import build_pruner
from atvprune.world.tiny_llava import (
    TinyLlavaSpec,
    build_model,
    build_processor,
    build_tokenizer,
)

METHODS = {
    "magnitude": {"method": "magnitude"},
    "wanda": {"method": "wanda"},
    "atv": {"method": "atv", "alpha": 1.0},
    "sparsegpt": {"method": "sparsegpt"},
    "tamp": {"method": "tamp"},
}
WORDS = (
    "describe the image a red blue green circle square top left right is there yes no"
)
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


def spec_for(depth: int) -> TinyLlavaSpec:
    """A wider LLaVA-shaped model (~3.2 M parameters per decoder layer)."""
    return TinyLlavaSpec(
        image_size=48,
        patch_size=8,
        vision_hidden=64,
        vision_layers=2,
        vision_heads=4,
        text_hidden=512,
        text_layers=depth,
        text_heads=8,
        text_kv_heads=8,
        text_intermediate=1376,
    )


def records(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    words = WORDS.split()
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        answer = " ".join(rng.choice(words, size=int(rng.integers(20, 60))))
        out.append(
            {
                "id": f"s{i}",
                "image": Image.fromarray(pixels, "RGB"),
                "conversations": [
                    {"from": "human", "value": "<image>\ndescribe the image"},
                    {"from": "gpt", "value": answer},
                ],
            }
        )
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakSampler:
    """Highest resident set seen while active (sampled every 2 ms)."""

    def __enter__(self):
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def save_checkpoint(model, base_model, base_dir: Path, out_dir: Path) -> None:
    try:
        from atvprune.checkpoint import save_pruned
    except ImportError:
        model.save_pretrained(out_dir)
        return
    save_pruned(model, base_model, base_dir, out_dir, "float32", "llava")


def one_run(depth: int, method: str, n_samples: int, workdir: Path) -> dict:
    """Prune one model in this process; memory and checkpoint bytes as a dict."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    spec = spec_for(depth)
    tokenizer = build_tokenizer([WORDS])
    processor = build_processor(tokenizer, spec)
    adapter = get_adapter("llava")
    base = build_model(tokenizer, spec, seed=0).eval()
    base_dir = workdir / f"dense_d{depth}"
    if not base_dir.exists():
        base.save_pretrained(base_dir)
        processor.save_pretrained(base_dir)
    pool = build_pool(records(n_samples), processor, adapter, base.config)
    model = copy.deepcopy(base)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if torch.cuda.is_available():
        model.cuda()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = rss_bytes()
    started = time.process_time()  # CPU time: the wall clock is shared here
    with PeakSampler() as sampler:
        samples = capture(model, adapter, pool)
        pruner = build_pruner(METHODS[method], adapter=adapter)
        prune_model(
            model,
            adapter,
            samples,
            pruner,
            SparsityPattern.parse("0.5"),
            progress=False,
        )
    seconds = time.process_time() - started
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
        model.cpu()
    else:
        peak = sampler.peak
    out_dir = workdir / f"{method}_d{depth}"
    save_checkpoint(model, base, base_dir, out_dir)
    return {
        "depth": depth,
        "method": method,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "weights_mb": weights / MB,
        "extra_peak_mb": (peak - baseline) / MB,
        "seconds": seconds,
        "checkpoint_mb": dir_bytes(out_dir) / MB,
        "dense_mb": dir_bytes(base_dir) / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", type=int, nargs=2, default=[2, 8])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--samples", type=int, default=16, help="calibration samples")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        depth, method, workdir = args.one
        result = one_run(int(depth), method, args.samples, Path(workdir))
        print("RESULT " + json.dumps(result))
        return
    device = "CUDA allocator" if torch.cuda.is_available() else "resident set"
    print(f"pruning at 50%, {args.samples} calibration samples; memory: {device}")
    header = (
        f"{'method':10s} {'layers':>6s} {'params M':>8s} {'weights MB':>10s} "
        f"{'extra peak MB':>13s} {'CPU s':>7s} {'ckpt MB':>8s} {'ckpt/dense':>10s}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            for depth in args.depths:
                argv = [sys.executable, __file__, "--samples", str(args.samples)]
                argv += ["--one", str(depth), method, scratch]
                output = subprocess.run(
                    argv, capture_output=True, text=True, check=True
                ).stdout
                line = next(x for x in output.splitlines() if x.startswith("RESULT "))
                r = json.loads(line.removeprefix("RESULT "))
                print(
                    f"{method:10s} {depth:6d} {r['params_m']:8.1f} "
                    f"{r['weights_mb']:10.1f} {r['extra_peak_mb']:13.1f} "
                    f"{r['seconds']:7.1f} {r['checkpoint_mb']:8.2f} "
                    f"{r['checkpoint_mb'] / r['dense_mb']:10.3f}"
                )


if __name__ == "__main__":
    main()
