"""LLaVA-1.5 family adapter (`LlavaForConditionalGeneration`, Llama/Vicuna decoder).

Also serves the mini world's tiny LLaVA, which is built from the same classes.
Visual tokens are exactly the `<image>` placeholder positions the image features were
scattered into (methods.md 1.2).
"""

from __future__ import annotations

import torch

from atvprune.models.base import ModelAdapter


class LlavaAdapter(ModelAdapter):
    family = "llava"

    def model_class(self):
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration

    def language_model(self, model) -> torch.nn.Module:
        return model.model.language_model

    def decoder_layers(self, model) -> torch.nn.ModuleList:
        return self.language_model(model).layers

    def image_token_mask(self, model, inputs: dict) -> torch.Tensor:
        input_ids = inputs["input_ids"]
        if input_ids.shape[0] != 1:
            raise ValueError("image_token_mask expects a batch of one sample")
        return input_ids[0] == model.config.image_token_id
