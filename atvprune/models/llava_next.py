"""LLaVA-NeXT family adapter (`LlavaNextForConditionalGeneration`, anyres tiling).

Serves `llava-hf/llama3-llava-next-8b-hf` (Llama-3 decoder) and
`llava-hf/llava-v1.6-vicuna-7b-hf` (Vicuna decoder); both decoders are Llama layers, so
running one layer and TAMP's attention row are LLaVA-1.5's.

Visual tokens (methods.md 1.2): every position an image feature is scattered into. The
processor expands `<image>` into exactly as many placeholders as the packed features
have rows, and the packed features *include* the anyres `image_newline` row ends, so the
newline positions are visual, as in TAMP's splice mask.
"""

from __future__ import annotations

from atvprune.models.llava import LlavaAdapter


class LlavaNextAdapter(LlavaAdapter):
    family = "llava_next"
    # anyres: pixel_values is (1, n_tiles, 3, H, W); image_sizes gives the original
    # (height, width) the model needs to unpad the tile grid.
    batched_inputs = ("input_ids", "pixel_values", "image_sizes")

    def model_class(self):
        from transformers import LlavaNextForConditionalGeneration

        return LlavaNextForConditionalGeneration
