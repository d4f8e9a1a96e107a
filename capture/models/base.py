"""The model-adapter contract: what capture needs to know about a VLM to label and run it.

An adapter owns a model and its preprocessing. It names the submodules whose forward hooks
open and close the stage labels (the model's source is never patched), turns a raw sample into
model inputs, and runs the model's ordinary ``generate()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from analyze.contract import ModelInfo
from capture.data.sample import Modality, RawSample
from capture.models.hf import greedy_generate

Inputs = dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model: which weights, where, in what precision."""

    name: str
    model_path: str | None
    device: torch.device
    dtype: torch.dtype
    seed: int = 0
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

    def generate(
        self, inputs: Inputs, *, max_new_tokens: int, min_new_tokens: int, **extra: Any
    ) -> list[int]:
        """Greedy-decode with the model's ordinary ``generate()``; return the new token ids.

        ``extra`` goes to generate() (the capture benchmark passes a token clock)."""
        return greedy_generate(
            self.model,
            inputs,
            echoed=self.echoed_prompt_length(inputs),
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
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
        )
