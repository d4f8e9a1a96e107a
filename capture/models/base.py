"""The model-adapter contract: what capture needs to know about a VLM to label and run it.

An adapter owns a model and its preprocessing. It names the submodules whose forward hooks
open and close the stage labels (the model's source is never patched), turns a raw sample into
model inputs, and runs the model's ordinary ``generate()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from analyze.contract import ModelInfo
from capture.data.events import check_events, render_event_frames
from capture.data.sample import FramePick, Modality, RawSample
from capture.generation import GenerationSettings
from capture.models import hf
from capture.models.hf import Generated, generate_new_ids

Inputs = dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model: which weights, where, in what precision."""

    name: str
    model_path: str | None
    device: torch.device
    dtype: torch.dtype
    seed: int = 0
    weights: str = "pretrained"  # or "random": the published architecture, random weights, no files
    attn_implementation: str | None = None  # None: the model's default
    load_in: str | None = None  # "4bit" / "8bit" through bitsandbytes (transformers-loaded models)
    device_map: str | None = None  # "auto": spread over every local GPU (transformers/accelerate)


@dataclass(frozen=True)
class VisionParts:
    """Submodules that bound vision encoding.

    A forward pre-hook on any of ``enter`` opens ``stage3:vision`` (if not already open); the
    post-hook of ``exit`` closes it. ``parts`` get finer labels ``stage3:vision/<name>``
    (name is one of tower, projector, aggregate) around their own forward.
    """

    enter: tuple[nn.Module, ...]
    exit: nn.Module
    parts: tuple[tuple[str, nn.Module], ...]


class ModelAdapter(ABC):
    """One model family; subclasses build real or tiny weights and know its inputs."""

    modality: ClassVar[Modality]
    default_frames: ClassVar[int]  # frames per sample unless --frames says otherwise
    frame_pick: ClassVar[FramePick] = "linspace"  # how camera frames are picked from a clip
    model: nn.Module
    spec: ModelSpec
    weights_source: str

    @classmethod
    @abstractmethod
    def build(cls, spec: ModelSpec) -> ModelAdapter:
        """Load (or, for ``tiny-*``, construct with random seeded weights) the model.

        Raises CaptureError naming where it looked when weights are missing.
        """

    @abstractmethod
    def vision_parts(self) -> VisionParts:
        """The submodules whose hooks delimit ``stage3:vision``."""

    @abstractmethod
    def step_module(self) -> nn.Module:
        """The module called once per generation step (prefill, then each decode)."""

    @abstractmethod
    def prepare(self, raw: RawSample) -> Inputs:
        """Preprocess a raw sample into model inputs on the adapter's device (``stage2:preprocess``)."""

    @abstractmethod
    def encode_vision(self, inputs: Inputs) -> Inputs:
        """Decoupled mode: run the vision encoder explicitly and return generate() inputs that
        carry its features instead of pixels, so generate() encodes nothing again."""

    @abstractmethod
    def echoed_prompt_length(self, inputs: Inputs) -> int:
        """How many leading ids of ``model.generate(**inputs)``'s output repeat the prompt."""

    @abstractmethod
    def prompt_text(self, question: str, n_frames: int = 1) -> str:
        """The full prompt for ``question`` over ``n_frames`` frames, as tokenized, with its
        placeholders unexpanded."""

    @abstractmethod
    def prefill_tokens(self, inputs: Inputs) -> int:
        """The prompt's length in tokens with the vision tokens expanded (what prefill runs on)."""

    def set_up_generation(self, tokenizer: Any) -> None:
        """Pad with the tokenizer's pad token (its end-of-sequence token where it has none) and
        run the attention kernel ``spec.attn_implementation`` names: call once ``model`` is set."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.model.generation_config.pad_token_id = pad
        hf.set_attn_implementation(self.model, self.spec.attn_implementation)

    def frames_for(self, raw: RawSample) -> list[np.ndarray]:
        """The sample's frames: as loaded (camera frames or pre-rendered event frames), or the
        event stream, checked, drawn as ``raw.n_frames`` frames."""
        if raw.events is not None:
            check_events(raw.events, raw.sensor_hw, f"sample {raw.sample_id}")
            return render_event_frames(raw.events, raw.sensor_hw, raw.n_frames)
        return raw.frames

    def generate(
        self, inputs: Inputs, settings: GenerationSettings, *, seed: int | None = None, **extra: Any
    ) -> Generated:
        """Decode with the model's ordinary ``generate()`` as ``settings`` say (greedy unless
        they sample; ``seed`` seeds a sampled call); the new token ids and the KV cache's size.

        ``extra`` goes to generate() (the capture benchmark passes a token clock)."""
        return generate_new_ids(
            self.model,
            inputs,
            settings,
            echoed=self.echoed_prompt_length(inputs),
            seed=seed,
            **extra,
        )

    @abstractmethod
    def decode(self, token_ids: list[int]) -> str:
        """Token ids to text."""

    def devices(self) -> list[torch.device]:
        """The devices the model's weights are on: one, or several with ``--device-map auto``."""
        found = {p.device for p in self.model.parameters()}
        return sorted(found, key=str) or [self.spec.device]

    def describe(self) -> ModelInfo:
        """Facts for run.json: class, parameter count, weights source."""
        return ModelInfo(
            name=self.spec.name,
            class_name=type(self.model).__name__,
            parameters=sum(p.numel() for p in self.model.parameters()),
            weights=self.weights_source,
            modality=self.modality,
            attn_implementation=attn_implementation(self.model),
        )


def attn_implementation(model: nn.Module) -> str | None:
    """The attention kernel the model's language model runs (transformers' config setting)."""
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    impl = getattr(text, "_attn_implementation", None)
    return impl if isinstance(impl, str) else None
