"""Decoding settings: one frozen value per run, handed to every generate() and saved in run.json.

Greedy by default. ``--do-sample`` samples with temperature and top-p (default 1.0 each) and
transformers' default top-k of 50, which EventGPT's official inference also got (it sets no
top-k of its own; its defaults are temperature 0.6, top-p 1 and 512 new tokens). Sampled runs
seed torch's generator with ``seed + sample index`` right before every generate(), with the
profiler on and off alike, so capture's identity check compares the same draw.

Torch-free, like :mod:`capture.config`, which builds it from the options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyze.contract import GenerationInfo

DEFAULT_TOP_K = 50  # transformers' default when sampling


@dataclass(frozen=True)
class GenerationSettings:
    """What generate() is told, besides the inputs. ``None`` means "not used" (greedy: no
    temperature, top-p or top-k; no repetition penalty unless given)."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    cache: str = "dynamic"  # the KV cache: "dynamic" (grows per token) or "static" (preallocated)

    @classmethod
    def from_options(
        cls,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        cache: str = "dynamic",
    ) -> GenerationSettings:
        """Settings with the sampling defaults filled in (temperature 1, top-p 1, top-k 50)."""
        if not do_sample:
            return cls(max_new_tokens, min_new_tokens, repetition_penalty=repetition_penalty, cache=cache)
        return cls(
            max_new_tokens,
            min_new_tokens,
            do_sample=True,
            temperature=1.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            top_k=DEFAULT_TOP_K,
            repetition_penalty=repetition_penalty,
            cache=cache,
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate()``. Every decoding knob is passed explicitly, so a
        checkpoint's ``generation_config.json`` cannot turn greedy runs into sampled ones, and
        transformers never compiles on its own (on CUDA it would whenever the cache is static;
        only ``--compile`` compiles, see capture.settings)."""
        kwargs: dict[str, Any] = {
            "disable_compile": True,
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.cache == "static":
            kwargs["cache_implementation"] = "static"
        return kwargs

    def seed_for(self, seed: int, index: int) -> int | None:
        """The seed sample ``index`` is drawn with (None for greedy: nothing random)."""
        return seed + index if self.do_sample else None

    def describe(self, seed: int) -> GenerationInfo:
        """The settings for run.json."""
        return GenerationInfo(
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            num_beams=1,
            cache=self.cache,
            seeding=f"torch.manual_seed({seed} + sample index) before each generate()"
            if self.do_sample
            else None,
        )
