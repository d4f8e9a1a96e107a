"""LLaVA-1.5 and Video-LLaVA adapters (transformers classes), real or tiny random weights.

Prompts are built here rather than by the transformers processors: each ``<image>``/``<video>``
placeholder is expanded to one token per vision feature, as the processors do, so the same
code serves transformers 4.5x and 5.x and needs no torchvision (5.x's video processor does).

Prompts, as the EventGPT DSEC benchmarks and the models' documentation write them:
LLaVA-1.5 ``USER: <image>\n{question} ASSISTANT:`` with one ``<image>\n`` block per frame (the
benchmarks' 8-frame mode gives 8 images of 576 tokens); Video-LLaVA ``USER: <video>\n{question}
ASSISTANT:`` with one ``<video>`` for all frames (8 x 257 tokens). The dataset picks the frames
(``frame_pick``); event frames (``--image-source event``) come pre-rendered, or drawn here
from the event stream as EventGPT draws them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import transformers
from PIL import Image
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    VideoLlavaConfig,
    VideoLlavaForConditionalGeneration,
)

from capture.data.sample import FramePick, Modality, RawSample
from capture.models import hf, meta_build
from capture.models.base import Inputs, ModelAdapter, ModelSpec, VisionParts
from capture.models.published import published_config, random_weights_label
from capture.models.tiny import build_tiny_tokenizer, seeded
from capture.models.vocab import build_vocab_tokenizer

LLAVA_HUB_ID = "llava-hf/llava-1.5-7b-hf"
VIDEO_LLAVA_HUB_ID = "LanguageBind/Video-LLaVA-7B-hf"
VIDEO_FRAMES = 8  # Video-LLaVA samples 8 frames per clip

TINY_IMAGE_SIZE = 56  # 4x4 patches of 14 px


def _tiny_vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=14,
        projection_dim=32,
    )


def _tiny_text_config(vocab_size: int, tok: Any) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _tiny_image_processor() -> Any:
    # transformers 5.x names the PIL-backed processor explicitly; 4.x's default is PIL-backed.
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )


class _LlavaFamily(ModelAdapter):
    """Shared by LLaVA-1.5 and Video-LLaVA: prompt expansion, inputs, generate."""

    hub_id: ClassVar[str]
    model_cls: ClassVar[type]
    placeholder: ClassVar[str]
    pixel_key: ClassVar[str]

    def __init__(
        self, spec: ModelSpec, model: nn.Module, tokenizer: Any, image_processor: Any, source: str
    ) -> None:
        self.spec = spec
        # Weights loaded with a device map (--device-map auto, or 4/8-bit) are already placed:
        # moving them would undo that (and a bitsandbytes model cannot be moved).
        placed = getattr(model, "hf_device_map", None) is not None
        self.model = (model if placed else hf.place(model, spec)).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.weights_source = source
        cfg = model.config
        vision = cfg.vision_config
        self.patches = (vision.image_size // vision.patch_size) ** 2
        self.placeholder_id = int(tokenizer.convert_tokens_to_ids(self.placeholder))
        self.set_up_generation(tokenizer)

    @classmethod
    def build(cls, spec: ModelSpec) -> ModelAdapter:
        if spec.weights == "random":
            return cls.build_random(spec)
        if spec.name.startswith("tiny-"):
            seeded(spec.seed)
            tok = build_tiny_tokenizer()
            model = cls.model_cls(cls.tiny_config(tok)).to(spec.dtype)
            return cls(
                spec, model, tok, _tiny_image_processor(), f"random init (tiny config, seed {spec.seed})"
            )
        source = spec.model_path or cls.hub_id
        model = hf.load_pretrained(
            cls.model_cls, spec.name, source, **hf.dtype_kwarg(spec.dtype), **hf.load_kwargs(spec)
        )
        tok = hf.load_pretrained(AutoTokenizer, spec.name, source)
        proc = hf.load_pretrained(AutoImageProcessor, spec.name, source)
        return cls(spec, model, tok, proc, source)

    # --weights random: the tokens the published tokenizer adds after LLaMA's 32000 (ids 32000, ...).
    added_tokens: ClassVar[tuple[str, ...]]

    @classmethod
    def build_random(cls, spec: ModelSpec) -> ModelAdapter:
        """The published architecture at full size, random weights, built on the meta device and
        allocated in ``spec.dtype`` on ``spec.device``; tokenizer and processor from parameters."""
        from capture.models.eventgpt import clip_image_processor

        config = cls.config_cls(**published_config(spec.name))
        kwargs = {**hf.dtype_kwarg(spec.dtype), **hf.load_kwargs(spec)}
        model = meta_build.build_on_meta(lambda: cls.model_cls._from_config(config, **kwargs))
        meta_build.materialise(model, spec.device, spec.seed)
        tokenizer = build_vocab_tokenizer(32000, cls.added_tokens, pad_token="<pad>")
        processor = clip_image_processor(config.vision_config.image_size)
        return cls(spec, model, tokenizer, processor, random_weights_label(spec.seed))

    config_cls: ClassVar[type]
    # Config fields naming the placeholder tokens: field -> token.
    token_fields: ClassVar[dict[str, str]]

    @classmethod
    def tiny_config(cls, tok: Any) -> Any:
        """The family's config at toy size, placeholder ids taken from the tiny tokenizer."""
        return cls.config_cls(
            vision_config=_tiny_vision_config(),
            text_config=_tiny_text_config(len(tok), tok),
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
            projector_hidden_act="gelu",
            **{field: int(tok.convert_tokens_to_ids(token)) for field, token in cls.token_fields.items()},
        )

    # -- inputs -----------------------------------------------------------------------------
    def n_placeholder_tokens(self, n_frames: int) -> int:
        """Tokens one placeholder stands for."""
        raise NotImplementedError

    def prompt_text(self, question: str, n_frames: int = 1) -> str:
        raise NotImplementedError

    def prefill_tokens(self, inputs: Inputs) -> int:
        """The expanded prompt's length (placeholders are expanded in ``input_ids`` already)."""
        key = "input_ids" if "input_ids" in inputs else "inputs_embeds"
        return int(inputs[key].shape[1])

    def pixels(self, frames: list[np.ndarray]) -> torch.Tensor:
        images = [Image.fromarray(f) for f in frames]
        out = self.image_processor(images=images, return_tensors="pt")
        return next(iter(out.values()))  # "pixel_values" (key name differs across versions)

    def prepare(self, raw: RawSample) -> Inputs:
        frames = self.frames_for(raw)
        if not frames:
            raise ValueError(f"sample {raw.sample_id} has no frames for {self.spec.name}")
        pixels = self.pixels(frames)
        text = self.prompt_text(raw.prompt, len(frames))
        text = text.replace(self.placeholder, self.placeholder * self.n_placeholder_tokens(len(frames)))
        enc = self.tokenizer(text, return_tensors="pt")
        dev, dtype = self.spec.device, self.spec.dtype
        return {
            "input_ids": enc["input_ids"].to(dev),
            "attention_mask": enc["attention_mask"].to(dev),
            self.pixel_key: self.shape_pixels(pixels).to(dev, dtype),
        }

    def shape_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels

    # -- running ----------------------------------------------------------------------------
    def step_module(self) -> nn.Module:
        return self.model

    def echoed_prompt_length(self, inputs: Inputs) -> int:
        """The HF loop echoes ``input_ids``; given only ``inputs_embeds`` (decoupled, 4.x) it does not."""
        return int(inputs["input_ids"].shape[1]) if "input_ids" in inputs else 0

    def decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))

    def encode_vision(self, inputs: Inputs) -> Inputs:
        rest = {k: v for k, v in inputs.items() if k != self.pixel_key}
        with torch.no_grad():
            out = self.vision_features(inputs[self.pixel_key])
        if hf.supports_mm_encoder_outputs(self.model):  # transformers 5.x
            return {**rest, "mm_encoder_outputs": {self.modality_key: out}}
        feats = out if isinstance(out, torch.Tensor) else torch.cat(list(out), dim=0)
        embeds = hf.scatter_features(self.model, rest["input_ids"], self.placeholder_id, feats)
        return {"inputs_embeds": embeds, "attention_mask": rest["attention_mask"]}

    modality_key: ClassVar[str]

    def vision_features(self, pixels: torch.Tensor) -> Any:
        raise NotImplementedError


class LlavaAdapter(_LlavaFamily):
    """``llava-1.5`` / ``tiny-llava``: each frame an image through the CLIP tower (1 by default)."""

    modality: ClassVar[Modality] = "image"
    default_frames: ClassVar[int] = 1
    frame_pick: ClassVar[FramePick] = "linspace"
    hub_id = LLAVA_HUB_ID
    model_cls = LlavaForConditionalGeneration
    placeholder = "<image>"
    pixel_key = "pixel_values"
    modality_key = "image"
    config_cls = LlavaConfig
    token_fields: ClassVar[dict[str, str]] = {"image_token_index": "<image>"}
    added_tokens = ("<image>", "<pad>")

    def n_placeholder_tokens(self, n_frames: int) -> int:
        """Per image: one token per patch (CLS dropped by the "default" strategy)."""
        strategy = getattr(self.model.config, "vision_feature_select_strategy", "default")
        return self.patches if strategy == "default" else self.patches + 1

    def prompt_text(self, question: str, n_frames: int = 1) -> str:
        """``USER: <image>\n{question} ASSISTANT:``, one ``<image>\n`` per frame."""
        blocks = (self.placeholder + "\n") * n_frames
        return f"USER: {blocks}{question} ASSISTANT:"

    def vision_parts(self) -> VisionParts:
        inner = hf.inner_model(self.model)
        tower, projector = inner.vision_tower, inner.multi_modal_projector
        return VisionParts(enter=(tower,), exit=projector, parts=(("tower", tower), ("projector", projector)))

    def vision_features(self, pixels: torch.Tensor) -> Any:
        cfg = self.model.config
        kw: dict[str, Any] = {
            "vision_feature_layer": cfg.vision_feature_layer,
            "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        }
        if hf.supports_mm_encoder_outputs(self.model):
            kw["return_dict"] = True
        return self.model.get_image_features(pixel_values=pixels, **kw)


class VideoLlavaAdapter(_LlavaFamily):
    """``video-llava`` / ``tiny-video-llava``: 8 frames (by default) through the video tower."""

    modality: ClassVar[Modality] = "video"
    default_frames: ClassVar[int] = VIDEO_FRAMES
    frame_pick: ClassVar[FramePick] = "arange"
    hub_id = VIDEO_LLAVA_HUB_ID
    model_cls = VideoLlavaForConditionalGeneration
    placeholder = "<video>"
    pixel_key = "pixel_values_videos"
    modality_key = "video"
    config_cls = VideoLlavaConfig
    token_fields: ClassVar[dict[str, str]] = {"image_token_index": "<image>", "video_token_index": "<video>"}
    added_tokens = ("<image>", "<video>", "<pad>")

    def n_placeholder_tokens(self, n_frames: int) -> int:
        return n_frames * (self.patches + 1)  # the video path keeps each frame's CLS token

    def prompt_text(self, question: str, n_frames: int = 1) -> str:
        """``USER: <video>\n{question} ASSISTANT:``: one ``<video>`` for all frames."""
        return f"USER: {self.placeholder}\n{question} ASSISTANT:"

    def shape_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.unsqueeze(0)  # (1, frames, 3, H, W)

    def vision_parts(self) -> VisionParts:
        inner = hf.inner_model(self.model)
        towers = (inner.image_tower, inner.video_tower)
        projector = inner.multi_modal_projector
        return VisionParts(
            enter=towers,
            exit=projector,
            parts=(("tower", towers[0]), ("tower", towers[1]), ("projector", projector)),
        )

    def vision_features(self, pixels: torch.Tensor) -> Any:
        kw: dict[str, Any] = {"vision_feature_layer": self.model.config.vision_feature_layer}
        inner = hf.inner_model(self.model)
        if hf.supports_mm_encoder_outputs(self.model):
            kw["return_dict"] = True
            return inner.get_video_features(pixel_values_videos=pixels, **kw)
        out = inner.get_video_features(pixel_values_videos=pixels, **kw)
        return out[0] if isinstance(out, tuple) else out
