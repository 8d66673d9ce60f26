"""LLaVA-1.5 family adapter (`LlavaForConditionalGeneration`, Llama/Vicuna decoder).

Also serves the mini world's tiny LLaVA, which is built from the same classes.
Visual tokens are exactly the `<image>` placeholder positions the image features were
scattered into (methods.md 1.2).
"""

from __future__ import annotations

import torch

from atvprune.methods import last_token_attention
from atvprune.models.base import ModelAdapter


class LlavaAdapter(ModelAdapter):
    family = "llava"

    def model_class(self):
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration

    def last_token_attention(self, layer, hidden: torch.Tensor, layer_kwargs: dict):
        """input_layernorm -> q/k projections -> Llama RoPE -> last query row."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)
        length = normed.shape[1]
        head_dim = attention.head_dim
        query = attention.q_proj(normed).view(1, length, -1, head_dim).transpose(1, 2)
        key = attention.k_proj(normed).view(1, length, -1, head_dim).transpose(1, 2)
        cos, sin = layer_kwargs["position_embeddings"]
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        return last_token_attention(query[0], key[0], attention.num_key_value_groups)
