"""The nine lmms-eval benchmarks of the paper, one module per task.

Each module exposes ``TASK`` (a ``BenchmarkSpec``), ``visuals(doc)``, ``prompt(doc)``,
``score(doc, prediction, mode, rng)`` and ``aggregate(records)``; see ``base``.
"""

from __future__ import annotations

from types import ModuleType

from atvprune.benchmarks import (
    gqa,
    mmbench_en_dev,
    mme,
    mmmu_val,
    ok_vqa_val2014,
    pope,
    scienceqa_img,
    textvqa_val,
    vizwiz_vqa_val,
)
from atvprune.benchmarks.base import SCORING_MODES, BenchmarkSpec

# In the order of the paper's table.
BENCHMARKS: dict[str, ModuleType] = {
    module.TASK.name: module
    for module in (
        ok_vqa_val2014,
        vizwiz_vqa_val,
        textvqa_val,
        gqa,
        pope,
        scienceqa_img,
        mmbench_en_dev,
        mme,
        mmmu_val,
    )
}


def get_benchmark(name: str) -> ModuleType:
    """The module of benchmark ``name``; KeyError naming it and the valid names."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(
            f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)}"
        ) from None


__all__ = ["BENCHMARKS", "SCORING_MODES", "BenchmarkSpec", "get_benchmark"]
