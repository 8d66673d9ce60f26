"""Peak memory of the current process (CUDA when present, else the resident set)."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS.
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
