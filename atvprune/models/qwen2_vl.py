"""Qwen2-VL and Qwen2.5-VL adapters (`Qwen2VLForConditionalGeneration`,
`Qwen2_5_VLForConditionalGeneration`); both keep their decoder at
`model.model.language_model.layers` in transformers 4.57.

Visual tokens (methods.md 1.2): exactly the `<|image_pad|>` positions (id 151655 in the
real checkpoints, `config.image_token_id`); `<|vision_start|>`/`<|vision_end|>`, the
system prompt and all text are text.

Positions (methods.md 1.4, 7.6): the official ATV code does not keep the decoder's
`position_embeddings`; before every layer call it rebuilds them from
`cache_position`, which gives all three mRoPE axes (t, h, w) the 1-D positions
0..L-1 instead of the image-grid positions the full model uses. That quirk changes
every calibration activation after the first image token, and it is the default here
(`true_mrope=False`) because the paper's numbers depend on it. `true_mrope=True` (the
`*_mrope` families) runs every layer with the model's own 3-D positions instead, as an
ablation. Evaluation always runs the full model, so the flag only affects pruning.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from atvprune.methods import last_token_attention
from atvprune.models.base import CapturedSample, ModelAdapter


def no_video_processor():
    """A stand-in for the processor's video part. transformers' Qwen video processor
    needs torchvision, which the pinned environment does not ship; images never use
    it and the processor only checks its type."""
    from transformers import BaseVideoProcessor

    class NoVideoProcessor(BaseVideoProcessor):
        def __init__(self):
            pass

        def __call__(self, *args, **kwargs):
            raise NotImplementedError("video inputs are not supported here")

    return NoVideoProcessor()


def saved_chat_template(path: Path) -> str | None:
    """The chat template saved beside a processor (jinja file or legacy JSON)."""
    path = Path(path)
    if (path / "chat_template.jinja").exists():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").exists():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return None


class Qwen2VLAdapter(ModelAdapter):
    family = "qwen2_vl"
    # lmms-eval's qwen2_vl wrapper cuts the generation at the task's `until` strings.
    applies_until = True
    # pixel_values are flattened patches (n_patches, C*T*P*P) without a batch
    # dimension; image_grid_thw is (n_images, 3).
    batched_inputs = ("input_ids",)
    unbatched_inputs = ("pixel_values", "image_grid_thw")
    # lmms-eval 0.4 `qwen2_vl` wrapper: far below Qwen2-VL's own default pixel cap.
    eval_processor_kwargs = {"min_pixels": 3136, "max_pixels": 602112}

    def __init__(self, true_mrope: bool = False):
        self.true_mrope = bool(true_mrope)

    def model_class(self):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration

    def processor_class(self):
        from transformers import Qwen2VLProcessor

        return Qwen2VLProcessor

    def load_processor(self, path):
        """Image processor + tokenizer + chat template from `path`, assembled without
        AutoProcessor (which insists on the torchvision-only video processor). The
        slow `Qwen2VLImageProcessor` is used; the fast one also needs torchvision."""
        from transformers import AutoTokenizer, Qwen2VLImageProcessor

        tokenizer = AutoTokenizer.from_pretrained(path)
        return self.processor_class()(
            image_processor=Qwen2VLImageProcessor.from_pretrained(path),
            tokenizer=tokenizer,
            video_processor=no_video_processor(),
            chat_template=saved_chat_template(path) or tokenizer.chat_template,
        )

    def capture_layer_inputs(self, model, inputs: dict) -> CapturedSample:
        sample = super().capture_layer_inputs(model, inputs)
        if not self.true_mrope:
            # As in the official code: the cached kwargs carry no rotary embeddings;
            # run_layer rebuilds them from cache_position before every call.
            sample.layer_kwargs.pop("position_embeddings", None)
        return sample

    def position_embeddings(self, layer, hidden: torch.Tensor, layer_kwargs: dict):
        """(cos, sin) a layer call uses: 1-D quirk by default, else the cached mRoPE."""
        if self.true_mrope:
            if "position_embeddings" not in layer_kwargs:
                raise KeyError(
                    "true-mRoPE mode needs the captured position_embeddings; these "
                    "inputs were captured with the 1-D quirk (true_mrope=False)"
                )
            return layer_kwargs["position_embeddings"]
        cache_position = layer_kwargs.get("cache_position")
        if cache_position is None:
            cache_position = torch.arange(hidden.shape[1], device=hidden.device)
        # (1, 1, L) positions broadcast over the 3 mRoPE axes: every axis gets 0..L-1.
        return layer.self_attn.rotary_emb(hidden, cache_position[None, None])

    def run_layer(
        self, layer, hidden: torch.Tensor, layer_kwargs: dict
    ) -> torch.Tensor:
        kwargs = dict(layer_kwargs)
        kwargs["position_embeddings"] = self.position_embeddings(
            layer, hidden, layer_kwargs
        )
        return super().run_layer(layer, hidden, kwargs)

    def last_token_attention(self, layer, hidden: torch.Tensor, layer_kwargs: dict):
        """input_layernorm -> q/k projections (with bias) -> mRoPE with the same
        positions as run_layer -> last query row, head-averaged (methods.md 5.1)."""
        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)
        length = normed.shape[1]
        head_dim = attention.head_dim
        query = attention.q_proj(normed).view(1, length, -1, head_dim).transpose(1, 2)
        key = attention.k_proj(normed).view(1, length, -1, head_dim).transpose(1, 2)
        cos, sin = self.position_embeddings(layer, hidden, layer_kwargs)
        query, key = self._apply_rope(
            query, key, cos, sin, attention.rope_scaling["mrope_section"]
        )
        return last_token_attention(query[0], key[0], attention.num_key_value_groups)

    def _apply_rope(self, query, key, cos, sin, mrope_section):
        from transformers.models.qwen2_vl.modeling_qwen2_vl import (
            apply_multimodal_rotary_pos_emb,
        )

        return apply_multimodal_rotary_pos_emb(query, key, cos, sin, mrope_section)


class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    family = "qwen2_5_vl"
    # lmms-eval 0.4 resolves `--model qwen2_5_vl` to its chat wrapper, which applies
    # no `until` truncation (benchmarks.md 10).
    applies_until = False
    # lmms-eval 0.4 `qwen2_5_vl` chat wrapper.
    eval_processor_kwargs = {"min_pixels": 200704, "max_pixels": 1605632}

    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def processor_class(self):
        from transformers import Qwen2_5_VLProcessor

        return Qwen2_5_VLProcessor

    def _apply_rope(self, query, key, cos, sin, mrope_section):
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
            apply_multimodal_rotary_pos_emb,
        )

        return apply_multimodal_rotary_pos_emb(query, key, cos, sin, mrope_section)
