"""Rule train_model: build the tiny LLaVA from its config and instruction-tune it on the
mini world. Output: a `save_pretrained` model + processor and `train_log.json`."""

import argparse
import json
import time
from pathlib import Path

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
from atvprune.world.train import TrainSettings, focus_settings, train
from atvprune.world.vision_pretrain import VisionPretrainSettings, pretrain_vision


def main(world_dir: str, out_dir: str, spec: dict, threads: int, log_path=None) -> None:
    with log_to(log_path) as log:
        settings = TrainSettings(**spec["train"])
        set_seed(settings.seed, threads)
        started = time.perf_counter()
        examples = training_examples(Path(world_dir))
        tokenizer = build_tokenizer(example_texts(examples))
        arch = TinyLlavaSpec(**spec.get("architecture", {}))
        processor = build_processor(tokenizer, arch)
        model = build_model(tokenizer, arch, seed=settings.seed)
        n_params = count_parameters(model)
        log.info(
            "%d examples, vocabulary %d, %d parameters",
            len(examples),
            len(tokenizer),
            n_params,
        )
        vision_curve = []
        if spec.get("vision_pretrain"):
            vision_settings = VisionPretrainSettings(**spec["vision_pretrain"])
            vision_curve = pretrain_vision(
                model, processor, vision_settings, log=log.info
            )
        focus_curve = []
        if spec.get("focus_stage"):
            focus = spec["focus_stage"]
            focus_examples = training_examples(
                Path(world_dir), tasks=tuple(focus["tasks"]), conversations=False
            )
            log.info(
                "focus stage: %d examples of %s", len(focus_examples), focus["tasks"]
            )
            focus_curve = train(
                model,
                processor,
                focus_examples,
                focus_settings(settings, focus["steps"]),
                log=log.info,
            )
            model.train()
        curve = train(model, processor, examples, settings, log=log.info)
        with atomic_dir(Path(out_dir)) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            record = {
                "n_examples": len(examples),
                "vocabulary": len(tokenizer),
                "n_parameters": n_params,
                "n_language_model_parameters": count_parameters(
                    model.model.language_model
                ),
                "architecture": json.loads(json.dumps(arch.__dict__)),
                "train": spec["train"],
                "vision_pretrain": spec.get("vision_pretrain"),
                "vision_pretrain_curve": vision_curve,
                "focus_stage": spec.get("focus_stage"),
                "focus_stage_curve": focus_curve,
                "loss_curve": curve,
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
