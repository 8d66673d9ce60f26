"""The adapter interface shared by every model family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image


class StopForward(Exception):
    """Raised by the layer-0 catcher once it has the first decoder layer's inputs."""


@dataclass
class CapturedSample:
    """Inputs of decoder layer 0 for one calibration sample (batch 1, no padding)."""

    hidden: torch.Tensor  # (1, L, d), model dtype
    layer_kwargs: dict = field(
        default_factory=dict
    )  # attention mask, positions, rotary
    image_mask: torch.Tensor | None = None  # (L,) bool, True = visual token


class _LayerZeroCatcher(torch.nn.Module):
    """Stands in for decoder layer 0: records its inputs, then stops the forward."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer
        self.hidden: torch.Tensor | None = None
        self.kwargs: dict = {}
        # Qwen2-VL's decoder loop picks each layer's mask by this attribute.
        if hasattr(layer, "attention_type"):
            self.attention_type = layer.attention_type

    def forward(self, hidden_states, *args, **kwargs):
        self.hidden = hidden_states.detach()
        self.kwargs = {k: v for k, v in kwargs.items() if k in _KEPT_KWARGS}
        raise StopForward


# The keyword arguments a decoder layer needs to be re-run on cached inputs.
_KEPT_KWARGS = (
    "attention_mask",
    "position_ids",
    "cache_position",
    "position_embeddings",
)


def chat_messages(turns: Sequence[tuple[str, str]]) -> list[dict]:
    """(role, text) turns -> chat messages; the image joins the first user turn."""
    messages = []
    for i, (role, text) in enumerate(turns):
        content = [{"type": "text", "text": text}]
        if i == 0:
            if role != "user":
                raise ValueError(
                    f"a conversation must start with a user turn, got {role!r}"
                )
            content.insert(0, {"type": "image"})
        messages.append({"role": role, "content": content})
    return messages


class ModelAdapter:
    """Base class; subclasses fill in the family-specific parts."""

    family = "base"
    # lmms-eval's llava wrapper never applies `until`; the Qwen wrappers do.
    applies_until = False
    # Processor outputs a calibration sample keeps. "Batched" ones carry a batch
    # dimension of 1 that is dropped for storage and restored for the forward;
    # "unbatched" ones have none (Qwen's flattened patches and grid sizes).
    batched_inputs: tuple[str, ...] = ("input_ids", "pixel_values")
    unbatched_inputs: tuple[str, ...] = ()
    # Stored inputs cast to the model dtype before the forward.
    float_inputs: tuple[str, ...] = ("pixel_values",)

    def model_class(self):
        raise NotImplementedError

    def load(self, path, dtype: str = "float32"):
        """(model, processor) from a `save_pretrained` directory, in eval mode."""
        model = self.model_class().from_pretrained(
            path, torch_dtype=getattr(torch, dtype)
        )
        model.eval()
        return model, self.load_processor(path)

    def load_processor(self, path):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    def decoder_layers(self, model) -> torch.nn.ModuleList:
        return self.language_model(model).layers

    def language_model(self, model) -> torch.nn.Module:
        """The decoder; transformers 4.57's LLaVA, LLaVA-NeXT and Qwen-VL classes all
        nest it as model.model.language_model."""
        return model.model.language_model

    def image_token_mask(self, model, inputs: dict) -> torch.Tensor:
        """(L,) bool for a batch-1 processor output: True where a visual token sits."""
        input_ids = inputs["input_ids"]
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError("image_token_mask expects a batch of one sample")
        return self.image_mask_from_ids(model.config, input_ids[0])

    def image_mask_from_ids(self, config, input_ids: torch.Tensor) -> torch.Tensor:
        """(L,) bool from one sample's (L,) token ids and the model config: the image
        placeholder tokens (families with extra visual tokens override this)."""
        return input_ids == config.image_token_id

    def pool_tensors(self, inputs: dict) -> dict[str, torch.Tensor]:
        """The per-sample tensors a calibration pool stores for a batch-1 encoding."""
        missing = [
            k for k in (*self.batched_inputs, *self.unbatched_inputs) if k not in inputs
        ]
        if missing:
            raise KeyError(
                f"{self.family} adapter: processor output lacks {missing} "
                f"(has {sorted(inputs)})"
            )
        kept = {k: inputs[k][0] for k in self.batched_inputs}
        kept.update({k: inputs[k] for k in self.unbatched_inputs})
        return kept

    def forward_inputs(
        self, tensors: dict, device=None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Stored pool tensors -> keyword arguments of the model's forward (batch 1)."""
        inputs = {k: tensors[k][None] for k in self.batched_inputs}
        inputs.update({k: tensors[k] for k in self.unbatched_inputs})
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        for key, value in inputs.items():
            cast = dtype if key in self.float_inputs else None
            inputs[key] = value.to(device=device, dtype=cast)
        return inputs

    def chat_text(
        self, processor, turns: Sequence[tuple[str, str]], generation: bool
    ) -> str:
        """Render (role, text) turns with the model's chat template, image in turn 1."""
        return processor.apply_chat_template(
            chat_messages(turns), tokenize=False, add_generation_prompt=generation
        )

    def encode(self, processor, image: Image.Image, text: str) -> dict:
        """A calibration sample (processor defaults, as the official pruning code)."""
        return processor(images=[image], text=[text], return_tensors="pt")

    # Image-processor settings of lmms-eval's wrapper for this family at evaluation
    # time (benchmarks.md 10); empty = the checkpoint's own processor defaults.
    eval_processor_kwargs: dict = {}

    def encode_for_generation(
        self, processor, images: Sequence[Image.Image], texts: Sequence[str]
    ) -> dict:
        """A left-padded evaluation batch, lmms-eval wrapper's image settings."""
        return processor(
            images=list(images),
            text=list(texts),
            return_tensors="pt",
            padding=True,
            **self.eval_processor_kwargs,
        )

    def capture_layer_inputs(self, model, inputs: dict) -> CapturedSample:
        """Run the full multimodal forward up to decoder layer 0 and keep its inputs."""
        layers = self.decoder_layers(model)
        catcher = _LayerZeroCatcher(layers[0])
        layers[0] = catcher
        try:
            with torch.no_grad():
                model(**inputs, use_cache=False)
        except StopForward:
            pass
        finally:
            layers[0] = catcher.layer
        if catcher.hidden is None:
            raise RuntimeError(
                "decoder layer 0 was never reached during calibration capture"
            )
        return CapturedSample(
            hidden=catcher.hidden,
            layer_kwargs=catcher.kwargs,
            image_mask=self.image_token_mask(model, inputs),
        )

    def run_layer(
        self, layer, hidden: torch.Tensor, layer_kwargs: dict
    ) -> torch.Tensor:
        out = layer(hidden, use_cache=False, **layer_kwargs)
        return out[0] if isinstance(out, tuple) else out
