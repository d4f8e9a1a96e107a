"""Capture options: one frozen dataclass, saved whole into run.json and validated on the way back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import msgspec

from capture.errors import CaptureError

Mode = Literal["fused", "decoupled"]
Verify = Literal["first", "all", "none"]

MAX_SEED = 2**32 - 1  # NumPy's SeedSequence and torch.manual_seed both take it


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text, for frozen configs that describe themselves."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CaptureConfig:
    """Everything that decides what a capture run measures."""

    model: str = option("tiny-llava", "Model to run; tiny-* ones have random weights and need no download.")
    model_path: str | None = option(
        None, "Weights folder (eventgpt needs one), or a hub id looked up in the local HF cache."
    )
    dataset: str | None = option(
        None, "Dataset folder in the EventGPT DSEC layout; default: built-in synthetic."
    )
    samples: int = option(8, "Number of samples to capture.")
    out: str = option("traces", "Folder that receives one run folder per invocation.")
    mode: Mode = option("fused", "fused: ordinary generate(); decoupled: vision first, then generate().")
    device: str = option("auto", "auto, cpu or cuda.")
    device_map: str | None = option(
        None,
        "auto: spread one model that does not fit one GPU over all this node's GPUs "
        "(transformers' device_map='auto'; needs CUDA and the accelerate package).",
    )
    dtype: str = option("auto", "auto (bf16 on CUDA, fp32 on CPU), float32, float16 or bfloat16.")
    max_new_tokens: int = option(16, "Tokens to generate per sample (greedy).")
    min_new_tokens: int = option(0, "Force at least this many tokens (0: stop at EOS).")
    warmup: int = option(1, "Un-recorded generate() runs before the first sample.")
    verify: Verify = option(
        "first", "Samples whose tokens are re-generated with labels and profiler off and compared."
    )
    record_shapes: bool = option(False, "Record operator input shapes (larger traces).")
    with_stack: bool = option(False, "Record Python stacks (much larger traces, more overhead).")
    profile_memory: bool = option(False, "Record allocator events.")
    seed: int = option(0, "Seed for tiny-model weights and the synthetic dataset.")
    threads: int | None = option(
        None,
        "torch intra-op threads (default: torch's choice). 1 keeps CPU timings stable on a busy machine.",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise CaptureError naming the first option whose value cannot work."""
        checks = (
            (self.samples >= 1, "--samples", self.samples, "must be at least 1"),
            (self.max_new_tokens >= 1, "--max-new-tokens", self.max_new_tokens, "must be at least 1"),
            (self.min_new_tokens >= 0, "--min-new-tokens", self.min_new_tokens, "must be 0 or more"),
            (self.warmup >= 0, "--warmup", self.warmup, "must be 0 or more"),
            (0 <= self.seed <= MAX_SEED, "--seed", self.seed, f"must be between 0 and {MAX_SEED}"),
            (self.threads is None or self.threads >= 1, "--threads", self.threads, "must be at least 1"),
        )
        for ok, flag, value, rule in checks:
            if not ok:
                raise CaptureError(f"{flag} {value}: {rule}")
        if self.device_map not in (None, "auto"):
            raise CaptureError(f"--device-map {self.device_map}: expected auto")
        if self.min_new_tokens > self.max_new_tokens:
            raise CaptureError(
                f"--min-new-tokens {self.min_new_tokens} exceeds --max-new-tokens {self.max_new_tokens}"
            )

    def to_json(self) -> dict[str, Any]:
        """Plain dict for run.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, source: str = "run.json") -> CaptureConfig:
        """Rebuild from run.json's ``config``, checking every type and choice (unknown keys are
        ignored: they come from a newer stagetrace). CaptureError names the bad field."""
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise CaptureError(f"{source}: invalid config: {str(exc).replace('`$.', '`config.')}") from None
        except CaptureError as exc:
            raise CaptureError(f"{source}: invalid config: {exc}") from None

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


def help_of(name: str) -> str:
    """The help text of config field ``name`` (the CLI reuses it, so it is written once)."""
    for f in fields(CaptureConfig):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)
