"""The mini world's model: a ~1 M-parameter LLaVA built from transformers' real classes.

`LlavaForConditionalGeneration` (CLIP vision tower + 2-layer projector + Llama decoder),
a word-level tokenizer built locally with `tokenizers`, and a real `LlavaProcessor`
whose chat template mirrors LLaVA-1.5's ``USER: <image>\\n... ASSISTANT: ...</s>``
format. Everything downstream (calibration, pruning, evaluation) talks to it through
the same adapter that serves
the real llava-hf checkpoints, so the embedded default exercises the real code paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

# The spec is torch-free (the Snakefile's config check reads its fields); the model is
# built from it here.
from atvprune.catalog import TinyLlavaSpec

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE]

# LLaVA-1.5 ("vicuna_v1"-like) turn format: the image placeholder leads the first user
# turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: "
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Same split as tokenizers' `Whitespace` pre-tokenizer: runs of word characters or of
# punctuation. Used to collect the vocabulary exactly as the tokenizer will see it.
_WORD_RE = re.compile(r"\w+|[^\w\s]+")


def words(text: str) -> list[str]:
    """Split text the way the tokenizer's pre-tokenizer does."""
    return _WORD_RE.findall(text)


def build_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over every word of `texts` (sorted: ids ignore order)."""
    template_text = CHAT_TEMPLATE.replace("{", " ").replace("}", " ")
    vocab_words = sorted({w for text in [*texts, template_text] for w in words(text)})
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in vocab_words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    # WordPiece's decoder joins words with spaces and glues punctuation back ("B ." ->
    # "B.").
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE]})
    return tokenizer


def build_processor(
    tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec
) -> LlavaProcessor:
    """A real LlavaProcessor: CLIP image preprocessing + `<image>` expansion."""
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": spec.image_size},
        do_center_crop=True,
        crop_size={"height": spec.image_size, "width": spec.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by "default"
        chat_template=CHAT_TEMPLATE,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec, seed: int
) -> LlavaForConditionalGeneration:
    """Random-init LLaVA of the given shape (seeded)."""
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
        initializer_factor=spec.vision_init_factor,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=spec.text_init_range,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=spec.num_image_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.tiny_llava_spec = asdict(spec)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
