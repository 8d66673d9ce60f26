"""The mini world: tiny synthetic scenes and questions in the nine benchmarks' schemas.

``scenes`` samples, renders and captions 48x48 scenes of coloured shapes and digits;
``benchmarks`` turns them into records with the real lmms-eval dataset fields;
``conversations`` makes ShareGPT4V-like instruction data; ``build`` writes it all to
disk deterministically (``build_world``) and checks it (``check_disjoint``,
``dataset_fingerprint``).
"""

from atvprune.world.benchmarks import (
    EVAL_SPLITS,
    FEATURES,
    TASK_DATASETS,
    TASKS,
    build_task,
)
from atvprune.world.build import (
    DEFAULT_SIZES,
    build_world,
    check_disjoint,
    dataset_fingerprint,
)
from atvprune.world.conversations import conversation_records
from atvprune.world.scenes import (
    CELLS,
    COLOURS,
    DIGITS,
    SHAPES,
    Scene,
    caption,
    render,
    sample_scene,
)

__all__ = [
    "CELLS",
    "COLOURS",
    "DEFAULT_SIZES",
    "DIGITS",
    "EVAL_SPLITS",
    "FEATURES",
    "SHAPES",
    "TASKS",
    "TASK_DATASETS",
    "Scene",
    "build_task",
    "build_world",
    "caption",
    "check_disjoint",
    "conversation_records",
    "dataset_fingerprint",
    "render",
    "sample_scene",
]
