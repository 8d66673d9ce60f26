"""Rule train_model: build the tiny LLaVA from its config and instruction-tune it on the
mini world, stage by stage. Output: a `save_pretrained` model + processor and
`train_log.json` (every stage's loss curve)."""

import argparse
import json
import time
from pathlib import Path

from atvprune.benchmarks import BENCHMARKS
from atvprune.io import atomic_dir, dumps, environment, set_seed
from atvprune.runlog import log_to
from atvprune.world.instruct import example_texts, training_examples
from atvprune.world.tiny_llava import (
    TinyLlavaSpec,
    build_model,
    build_processor,
    build_tokenizer,
    count_parameters,
)
from atvprune.world.train import Stage, TrainSettings, stage_settings, train
from atvprune.world.vision_pretrain import VisionPretrainSettings, pretrain_vision


def parse_stages(entries: list[dict]) -> list[Stage]:
    """Config `stages` entries -> Stage objects; tasks "all" = every benchmark."""
    stages = []
    for entry in entries:
        fields = dict(entry)
        tasks = fields.pop("tasks")
        fields["tasks"] = tuple(BENCHMARKS) if tasks == "all" else tuple(tasks)
        stages.append(Stage(**fields))
    return stages


def main(world_dir: str, out_dir: str, spec: dict, threads: int, log_path=None) -> None:
    with log_to(log_path) as log:
        settings = TrainSettings(**spec["train"])
        stages = parse_stages(spec["stages"])
        set_seed(settings.seed, threads)
        started = time.perf_counter()
        world = Path(world_dir)
        # The vocabulary covers every text any stage can see.
        everything = training_examples(world)
        tokenizer = build_tokenizer(example_texts(everything))
        arch = TinyLlavaSpec(**spec.get("architecture", {}))
        processor = build_processor(tokenizer, arch)
        model = build_model(tokenizer, arch, seed=settings.seed)
        n_params = count_parameters(model)
        log.info(
            "%d examples, vocabulary %d, %d parameters",
            len(everything),
            len(tokenizer),
            n_params,
        )
        vision_curve = []
        if spec.get("vision_pretrain"):
            vision_settings = VisionPretrainSettings(**spec["vision_pretrain"])
            vision_curve = pretrain_vision(
                model, processor, vision_settings, log=log.info
            )
        stage_records = []
        # Stages that see the same data reuse its examples, token ids and pixels.
        examples_of = {(tuple(BENCHMARKS), 1, True): everything}
        cache: dict = {}
        for index, stage in enumerate(stages):
            key = (stage.tasks, stage.max_turns_per_image, stage.conversations)
            if key not in examples_of:
                examples_of[key] = training_examples(
                    world,
                    tasks=stage.tasks,
                    max_turns_per_image=stage.max_turns_per_image,
                    conversations=stage.conversations,
                )
            examples = examples_of[key]
            log.info("stage %r: %d examples", stage.name, len(examples))
            model.train()
            curve = train(
                model,
                processor,
                examples,
                stage_settings(settings, stage, index),
                log=log.info,
                cache=cache,
            )
            stage_records.append(
                {"name": stage.name, "n_examples": len(examples), "loss_curve": curve}
            )
        with atomic_dir(Path(out_dir)) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            record = {
                "n_examples": len(everything),
                "vocabulary": len(tokenizer),
                "n_parameters": n_params,
                "n_language_model_parameters": count_parameters(
                    model.model.language_model
                ),
                "architecture": json.loads(json.dumps(arch.__dict__)),
                "train": spec["train"],
                "stages": spec["stages"],
                "vision_pretrain": spec.get("vision_pretrain"),
                "vision_pretrain_curve": vision_curve,
                "stage_curves": stage_records,
                "wall_time_s": round(time.perf_counter() - started, 1),
                "environment": environment(),
            }
            (tmp / "train_log.json").write_text(dumps(record))


if "snakemake" in globals():
    sm = globals()["snakemake"]
    main(sm.input.world, sm.output[0], sm.params.spec, sm.threads, sm.log[0])
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("world_dir")
    parser.add_argument("out_dir")
    parser.add_argument(
        "--spec", required=True, help="JSON of a config models.<name> entry"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    main(args.world_dir, args.out_dir, json.loads(args.spec), args.threads)
