"""Tiny random-init instances of every adapter family, for tests and benchmarks.

Each is built from transformers' real config, model and processor classes with tiny
dimensions, a word-level tokenizer made locally with `tokenizers`, and a chat template
with the real family's turn structure. Nothing is downloaded. The token ids of the
special tokens differ from the real checkpoints' (the config is built to match the
tokenizer), which is what the adapters read, so the same code serves both.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

WORDS = (
    "system user assistant you are a helpful describe the image picture what is in "
    "red blue green circle square yes no there answer question one two three"
).split()

# Llama-3-style turns as in llava-hf/llama3-llava-next-8b-hf: the image placeholder
# leads the first user turn.
LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAVA_NEXT_SPECIALS = [
    "<pad>",
    "<unk>",
    "<s>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<image>",
]

# Qwen2-VL / Qwen2.5-VL turns: default system prompt, then the image wrapped in
# vision start/end tokens before the user text.
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _word_tokenizer(specials: list[str], tokenizer_class, **kwargs):
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in sorted(set(WORDS) | set(".,?!:'".replace("", " ").split())):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = tokenizer_class(
        tokenizer_object=core,
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
        **kwargs,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[2:]})
    return tokenizer


def tiny_llava_next(seed: int = 0, layers: int = 2):
    """(model, processor): LLaVA-NeXT, 16-px CLIP tile, anyres grid up to 32x32."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer = _word_tokenizer(
        LLAVA_NEXT_SPECIALS,
        PreTrainedTokenizerFast,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|eot_id|>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=LLAVA_NEXT_TEMPLATE,
    )
    pinpoints = [[16, 16], [16, 32], [32, 16], [32, 32]]
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 16},
        crop_size={"height": 16, "width": 16},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=4,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by "default"
        chat_template=LLAVA_NEXT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
        projection_dim=16,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=16,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    # Random init leaves image_newline at a meaningful random value already.
    _generation_ids(model, tokenizer)
    return model, processor


def tiny_qwen(version: str = "2", seed: int = 0, layers: int = 2):
    """(model, processor): Qwen2-VL (`version="2"`) or Qwen2.5-VL (`"2.5"`) with a
    4-px patch, 2x2 merge and a 4-head GQA decoder with mRoPE sections [1, 1, 2]."""
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor

    from atvprune.models.qwen2_vl import no_video_processor

    if version not in ("2", "2.5"):
        raise ValueError(f"unknown Qwen-VL version {version!r}; use '2' or '2.5'")
    tokenizer = _word_tokenizer(
        QWEN_SPECIALS,
        Qwen2TokenizerFast,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        chat_template=QWEN_TEMPLATE,
    )
    image_processor = Qwen2VLImageProcessor(
        patch_size=4,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=8 * 8,
        max_pixels=32 * 32,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
        "tie_word_embeddings": False,
    }
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    if version == "2":
        from transformers import (
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            Qwen2VLProcessor,
        )

        vision = {
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **special)
        model_class, processor_class = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    else:
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
        )

        vision = {
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 16,
            "fullatt_block_indexes": [1],
        }
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
        model_class = Qwen2_5_VLForConditionalGeneration
        processor_class = Qwen2_5_VLProcessor
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=no_video_processor(),
        chat_template=QWEN_TEMPLATE,
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _generation_ids(model, tokenizer)
    return model, processor


def _generation_ids(model, tokenizer) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
